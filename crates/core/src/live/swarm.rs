//! The live swarm state machine (to be written): peers, `pc_live` announcements, the window,
//! deadline-driven requests, relaying, and bans for forged, altered, replayed or out-of-window
//! pieces.
