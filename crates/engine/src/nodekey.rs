//! nodekey (to be written).
