//! units (to be written).
