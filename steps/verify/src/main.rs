//! `verify`: Reads back what is deployed and proves the intent holds; exit 3 on drift. Read-only.
//! Exit codes: docs/exit-codes.md.

fn main() -> std::process::ExitCode {
    netstep::step::main("verify", verify::run)
}
