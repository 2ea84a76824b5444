//! picker (to be written).
