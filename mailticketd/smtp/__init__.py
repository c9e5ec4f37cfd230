"""The SMTP side: an aiosmtpd adapter that accepts mail for our addresses into the durable inbox."""
