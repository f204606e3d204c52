//! mesh-connect step (being written).
