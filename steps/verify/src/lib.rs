//! verify step (being written).
