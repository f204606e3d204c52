//! `fw-policy`: Global parent Azure Firewall Policy, regional child policies and each hub firewall's association.
//! Exit codes: docs/exit-codes.md.

fn main() -> std::process::ExitCode {
    netstep::step::main("fw-policy", fw_policy::run)
}
