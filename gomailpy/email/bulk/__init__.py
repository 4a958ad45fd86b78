"""What one email asks of bulk sending (gomailpy.bulk): the options carried on its
envelope (options.py) and SendGrid v3's `asm` and `tracking_settings` read into them (v3.py).
"""
