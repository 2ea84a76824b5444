//! tracker (to be written).
