//! `dns-link`: The Private DNS zone, a virtual network link for every VNet, and the A records.
//! Exit codes: docs/exit-codes.md.

fn main() -> std::process::ExitCode {
    netstep::step::main("dns-link", dns_link::run)
}
