//! create (to be written).
