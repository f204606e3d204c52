//! `admin-rules`: Security admin configuration, rule collections and rules (global guardrails above NSGs), committed as goal states.
//! Exit codes: docs/exit-codes.md.

fn main() -> std::process::ExitCode {
    netstep::step::main("admin-rules", admin_rules::run)
}
