//! admin-rules step (being written).
