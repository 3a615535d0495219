//! Certificates read without an X.509 crate: a small DER walker for what the status and renewal
//! need, chain checks through webpki (already linked by rustls), and P-256 CSRs signed by ring.
