//! choker (to be written).
