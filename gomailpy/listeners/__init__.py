"""The SMTP servers gomailpy runs: submission (mail in, `gomail smtp`) and the
bounce listener (reports back, `gomail bounces`). Need the `smtp` extra (aiosmtpd).
"""
