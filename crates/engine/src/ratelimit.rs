//! ratelimit (to be written).
