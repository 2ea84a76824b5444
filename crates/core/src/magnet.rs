//! magnet (to be written).
