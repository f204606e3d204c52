//! tag-groups step (being written).
