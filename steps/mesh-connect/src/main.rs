//! `mesh-connect`: Global hub mesh and per-region hub-and-spoke connectivity configurations, committed as per-region goal states.
//! Exit codes: docs/exit-codes.md.

fn main() -> std::process::ExitCode {
    netstep::step::main("mesh-connect", mesh_connect::run)
}
