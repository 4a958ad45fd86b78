"""What an email is: the request model, the envelope on the queue, the MIME message
on the wire, SendGrid's v3 request, templates, send times, VERP and DKIM. Pure: no I/O.
"""
