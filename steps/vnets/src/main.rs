//! `vnets`: the managed VNets (address space, subnets, DNS servers) and hub firewalls of the
//! intent. Exit codes: docs/exit-codes.md.

fn main() -> std::process::ExitCode {
    netstep::step::main("vnets", vnets::run)
}
