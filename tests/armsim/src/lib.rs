//! armsim (being written).
