//! BEP 10 extension payloads: the extension handshake, BEP 9 `ut_metadata`, BEP 11 `ut_pex`.
