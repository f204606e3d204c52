//! dns-link step (being written).
