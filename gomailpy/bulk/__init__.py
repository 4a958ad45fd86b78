"""What bulk senders must do: one-click unsubscribe (RFC 8058), unsubscribe groups (SendGrid's
`asm`), and open and click tracking, the same whichever provider carries an email.

- `settings`: `bulk:` in the configuration (the signing secret, the public URL, token lifetimes);
- `options`: what one email asks for (`BulkOptions`, on its envelope);
- `tokens`: signed, self-contained link tokens (no store read to verify);
- `headers`: `List-Unsubscribe` and `List-Unsubscribe-Post` for an email;
- `links`: the SMTP path's link rewriting and open pixel;
- `machine`: whether a hit was a mail privacy proxy or a link scanner;
- `hits`: the `unsubscribed`, `opened` and `clicked` events a hit makes;
- `batcher`: events onto the events queue in batches, nothing written per hit;
- `unsubscribes`: recording an unsubscribe, from a link or mail to the `mailto:` address;
- `groups`: the unsubscribe groups kept on the status table;
- `page`: the confirmation page a GET of an unsubscribe link shows.

See docs/bulk-sending.md.
"""
