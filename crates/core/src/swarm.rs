//! swarm (to be written).
