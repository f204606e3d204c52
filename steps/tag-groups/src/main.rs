//! `tag-groups`: AVNM network manager, tag-driven network groups (Azure Policy addToNetworkGroup), static members and VNet tags.
//! Exit codes: docs/exit-codes.md.

fn main() -> std::process::ExitCode {
    netstep::step::main("tag-groups", tag_groups::run)
}
