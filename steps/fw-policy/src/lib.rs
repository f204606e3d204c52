//! fw-policy step (being written).
