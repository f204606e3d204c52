//! Small syntactic rules: Azure names, regions, IPv4 addresses and prefixes, ports.

use std::net::Ipv4Addr;

/// Public Azure regions (ARM `name` form) plus the two EUAP canary regions.
pub const AZURE_REGIONS: &[&str] = &[
    "australiacentral",
    "australiacentral2",
    "australiaeast",
    "australiasoutheast",
    "austriaeast",
    "belgiumcentral",
    "brazilsouth",
    "brazilsoutheast",
    "canadacentral",
    "canadaeast",
    "centralindia",
    "centralus",
    "centraluseuap",
    "chilecentral",
    "eastasia",
    "eastus",
    "eastus2",
    "eastus2euap",
    "francecentral",
    "francesouth",
    "germanynorth",
    "germanywestcentral",
    "indonesiacentral",
    "israelcentral",
    "italynorth",
    "japaneast",
    "japanwest",
    "jioindiacentral",
    "jioindiawest",
    "koreacentral",
    "koreasouth",
    "malaysiawest",
    "mexicocentral",
    "newzealandnorth",
    "northcentralus",
    "northeurope",
    "norwayeast",
    "norwaywest",
    "polandcentral",
    "qatarcentral",
    "southafricanorth",
    "southafricawest",
    "southcentralus",
    "southeastasia",
    "southindia",
    "spaincentral",
    "swedencentral",
    "swedensouth",
    "switzerlandnorth",
    "switzerlandwest",
    "uaecentral",
    "uaenorth",
    "uksouth",
    "ukwest",
    "westcentralus",
    "westeurope",
    "westindia",
    "westus",
    "westus2",
    "westus3",
];

/// Checks an Azure region name; the error suggests the ARM form for display names.
pub fn check_region(name: &str) -> Result<(), String> {
    if AZURE_REGIONS.contains(&name) {
        return Ok(());
    }
    let squashed: String = name
        .chars()
        .filter(|c| !c.is_whitespace() && *c != '-' && *c != '_')
        .collect::<String>()
        .to_ascii_lowercase();
    if AZURE_REGIONS.contains(&squashed.as_str()) {
        return Err(format!(
            "`{name}` is not an Azure region name; write `{squashed}`"
        ));
    }
    Err(format!(
        "`{name}` is not a known Azure region (use the ARM name, e.g. westeurope, eastus2)"
    ))
}

/// Rejects non-ASCII characters (Unicode lookalikes such as Cyrillic `а`).
pub fn check_ascii(s: &str) -> Result<(), String> {
    match s.chars().find(|c| !c.is_ascii()) {
        None => Ok(()),
        Some(c) => Err(format!(
            "`{s}` contains the non-ASCII character '{c}' (U+{:04X}); names must be ASCII (lookalike letters are rejected)",
            c as u32
        )),
    }
}

/// Kinds of named resources with their Azure naming rules.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NameKind {
    /// Virtual network: 2-64, alnum first, alnum or `_` last, `[A-Za-z0-9_.-]` inside.
    Vnet,
    /// Subnet: 1-80, same alphabet.
    Subnet,
    /// AVNM network manager / group / configuration / collection / rule: 1-64,
    /// `^[0-9a-zA-Z]([0-9a-zA-Z_.-]{0,62}[0-9a-zA-Z_])?$`.
    Avnm,
    /// Firewall, firewall policy, public IP, rule collection group, firewall rules, DNS link:
    /// 1-80, same alphabet.
    Network80,
    /// Resource group: 1-90, `[A-Za-z0-9_.()-]`, not ending in `.`.
    ResourceGroup,
}

impl NameKind {
    fn label(self) -> &'static str {
        match self {
            NameKind::Vnet => "a VNet name",
            NameKind::Subnet => "a subnet name",
            NameKind::Avnm => "an AVNM resource name",
            NameKind::Network80 => "this resource name",
            NameKind::ResourceGroup => "a resource group name",
        }
    }
}

/// Checks a resource name against its kind's rules.
pub fn check_name(kind: NameKind, s: &str) -> Result<(), String> {
    check_ascii(s)?;
    let (min, max) = match kind {
        NameKind::Vnet => (2, 64),
        NameKind::Subnet | NameKind::Network80 => (1, 80),
        NameKind::Avnm => (1, 64),
        NameKind::ResourceGroup => (1, 90),
    };
    let len = s.len();
    if len < min || len > max {
        return Err(format!(
            "`{s}` is {len} characters; {} must be {min}-{max} characters",
            kind.label()
        ));
    }
    let bytes = s.as_bytes();
    if kind == NameKind::ResourceGroup {
        if let Some(c) = s
            .chars()
            .find(|c| !(c.is_ascii_alphanumeric() || "_.()-".contains(*c)))
        {
            return Err(format!(
                "`{s}` contains '{c}'; a resource group name may contain letters, digits, _ . ( ) -"
            ));
        }
        if s.ends_with('.') {
            return Err(format!(
                "`{s}`: a resource group name cannot end with a period"
            ));
        }
        return Ok(());
    }
    if let Some(c) = s
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || "_.-".contains(*c)))
    {
        return Err(format!(
            "`{s}` contains '{c}'; {} may contain only letters, digits, _ . -",
            kind.label()
        ));
    }
    if !bytes[0].is_ascii_alphanumeric() {
        return Err(format!(
            "`{s}`: {} must start with a letter or digit",
            kind.label()
        ));
    }
    let last = bytes[len - 1];
    if !(last.is_ascii_alphanumeric() || last == b'_') {
        return Err(format!(
            "`{s}`: {} must end with a letter, digit or underscore",
            kind.label()
        ));
    }
    Ok(())
}

/// Checks a subscription id (a GUID).
pub fn check_guid(s: &str) -> Result<(), String> {
    let parts: Vec<&str> = s.split('-').collect();
    let lens = [8, 4, 4, 4, 12];
    let ok = parts.len() == 5
        && parts
            .iter()
            .zip(lens)
            .all(|(p, l)| p.len() == l && p.chars().all(|c| c.is_ascii_hexdigit()));
    if ok {
        Ok(())
    } else {
        Err(format!(
            "`{s}` is not a subscription id (expected a GUID like 6b1f3e2a-9c4d-4e8f-a1b2-c3d4e5f60718)"
        ))
    }
}

/// A private DNS zone name: ASCII, lower case, at least two labels, labels 1-63 of
/// `[a-z0-9-]` not starting or ending with `-`, at most 253 characters.
pub fn check_zone_name(s: &str) -> Result<(), String> {
    check_ascii(s)?;
    if s.len() > 253 {
        return Err(format!("`{s}` is longer than 253 characters"));
    }
    let labels: Vec<&str> = s.split('.').collect();
    if labels.len() < 2 {
        return Err(format!(
            "`{s}` is not a DNS zone name: it needs at least two labels (e.g. example.com)"
        ));
    }
    for l in &labels {
        check_label(s, l, false)?;
        if l.chars().any(|c| c.is_ascii_uppercase()) {
            return Err(format!("`{s}`: write the zone name in lower case"));
        }
    }
    Ok(())
}

fn check_label(full: &str, l: &str, allow_underscore: bool) -> Result<(), String> {
    if l.is_empty() || l.len() > 63 {
        return Err(format!(
            "`{full}`: DNS labels must be 1-63 characters (found `{l}`)"
        ));
    }
    if let Some(c) = l
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || *c == '-' || (allow_underscore && *c == '_')))
    {
        return Err(format!("`{full}`: DNS label `{l}` contains '{c}'"));
    }
    if l.starts_with('-') || l.ends_with('-') {
        return Err(format!(
            "`{full}`: DNS label `{l}` cannot start or end with a hyphen"
        ));
    }
    Ok(())
}

/// A record set name relative to its zone: `@`, or dot-separated labels (`_` allowed, a
/// leading `*` label allowed).
pub fn check_record_name(s: &str) -> Result<(), String> {
    check_ascii(s)?;
    if s == "@" {
        return Ok(());
    }
    if s.len() > 253 {
        return Err(format!("`{s}` is longer than 253 characters"));
    }
    if s.ends_with('.') {
        return Err(format!(
            "`{s}`: record names are relative to the zone; drop the trailing dot"
        ));
    }
    for (i, l) in s.split('.').enumerate() {
        if i == 0 && l == "*" {
            continue;
        }
        check_label(s, l, true)?;
    }
    Ok(())
}

/// Tag names: 1-512 characters without `< > % & \ ? /`; values up to 256 characters.
pub fn check_tag(name: &str, value: &str) -> Result<(), String> {
    check_ascii(name)?;
    if name.is_empty() || name.len() > 512 {
        return Err(format!("tag name `{name}` must be 1-512 characters"));
    }
    if let Some(c) = name.chars().find(|c| "<>%&\\?/".contains(*c)) {
        return Err(format!("tag name `{name}` cannot contain '{c}'"));
    }
    if value.chars().count() > 256 {
        return Err(format!("tag `{name}`: values are at most 256 characters"));
    }
    Ok(())
}

/// An IPv4 prefix.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Cidr {
    /// Network address.
    pub addr: u32,
    /// Prefix length 0-32.
    pub len: u8,
}

impl Cidr {
    /// First address.
    pub fn start(self) -> u32 {
        self.addr
    }
    /// Last address.
    pub fn end(self) -> u32 {
        if self.len == 0 {
            u32::MAX
        } else {
            self.addr | (u32::MAX >> self.len)
        }
    }
    /// Whether `other` lies entirely inside `self`.
    pub fn contains(self, other: Cidr) -> bool {
        other.start() >= self.start() && other.end() <= self.end()
    }
    /// Whether the address lies inside.
    pub fn contains_ip(self, ip: u32) -> bool {
        ip >= self.start() && ip <= self.end()
    }
}

impl std::fmt::Display for Cidr {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", Ipv4Addr::from(self.addr), self.len)
    }
}

/// Parses an IPv4 address in strict dotted-decimal form.
pub fn parse_ipv4(s: &str) -> Result<u32, String> {
    if s.contains(':') {
        return Err(format!(
            "`{s}` is an IPv6 address; only IPv4 is supported for now"
        ));
    }
    s.parse::<Ipv4Addr>()
        .map(u32::from)
        .map_err(|_| format!("`{s}` is not an IPv4 address"))
}

/// Parses a canonical IPv4 CIDR (`10.0.0.0/16`).
pub fn parse_cidr(s: &str) -> Result<Cidr, String> {
    if s.contains(':') {
        return Err(format!(
            "`{s}` is an IPv6 prefix; only IPv4 is supported for now"
        ));
    }
    let Some((a, l)) = s.split_once('/') else {
        return Err(format!(
            "`{s}` is not a CIDR prefix (expected a.b.c.d/len, e.g. 10.0.0.0/16)"
        ));
    };
    let addr = a
        .parse::<Ipv4Addr>()
        .map(u32::from)
        .map_err(|_| format!("`{s}`: `{a}` is not an IPv4 address"))?;
    if l.is_empty() || !l.chars().all(|c| c.is_ascii_digit()) || l.len() > 2 {
        return Err(format!("`{s}`: prefix length `{l}` is not a number 0-32"));
    }
    let len: u8 = l
        .parse()
        .map_err(|_| format!("`{s}`: prefix length `{l}` is not a number 0-32"))?;
    if len > 32 {
        return Err(format!(
            "`{s}`: prefix length /{len} is out of range (0-32 for IPv4)"
        ));
    }
    let mask = if len == 0 { 0 } else { u32::MAX << (32 - len) };
    if addr & mask != addr {
        let canon = Cidr {
            addr: addr & mask,
            len,
        };
        return Err(format!("`{s}` has host bits set; the prefix is {canon}"));
    }
    Ok(Cidr { addr, len })
}

/// A port or port range: `*`, `N` or `LO-HI`, within 0-65535 and LO <= HI.
pub fn check_port_range(s: &str) -> Result<(u16, u16), String> {
    if s == "*" {
        return Ok((0, 65535));
    }
    let num = |t: &str| -> Result<u16, String> {
        if t.is_empty() || !t.chars().all(|c| c.is_ascii_digit()) || t.len() > 5 {
            return Err(format!(
                "`{s}` is not a port or port range (\"80\", \"1000-2000\", \"*\")"
            ));
        }
        t.parse::<u32>()
            .ok()
            .and_then(|v| u16::try_from(v).ok())
            .ok_or_else(|| format!("`{s}`: port {t} is out of range 0-65535"))
    };
    match s.split_once('-') {
        None => {
            let p = num(s)?;
            Ok((p, p))
        }
        Some((a, b)) => {
            let (lo, hi) = (num(a)?, num(b)?);
            if lo > hi {
                return Err(format!("`{s}`: the range is reversed ({lo} > {hi})"));
            }
            Ok((lo, hi))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cidr_parsing() {
        assert_eq!(
            parse_cidr("10.1.0.0/22").unwrap().to_string(),
            "10.1.0.0/22"
        );
        assert!(
            parse_cidr("10.0.0.1/16")
                .unwrap_err()
                .contains("10.0.0.0/16")
        );
        assert!(parse_cidr("10.0.0.0/33").unwrap_err().contains("/33"));
        assert!(parse_cidr("fd00::/8").unwrap_err().contains("IPv6"));
        assert!(parse_cidr("10.0.0.0").is_err());
        assert!(parse_cidr("10.0.0/8").is_err());
        let a = parse_cidr("10.2.0.0/16").unwrap();
        let b = parse_cidr("10.2.0.0/22").unwrap();
        assert!(a.contains(b) && !b.contains(a));
        assert_eq!(parse_cidr("0.0.0.0/0").unwrap().end(), u32::MAX);
    }

    #[test]
    fn names() {
        assert!(check_name(NameKind::Vnet, "vnet-hub-eastus").is_ok());
        assert!(check_name(NameKind::Vnet, "v").is_err());
        assert!(check_name(NameKind::Vnet, "vnet-").is_err());
        assert!(check_name(NameKind::Vnet, "vnet_").is_ok());
        assert!(check_name(NameKind::Avnm, "a").is_ok());
        assert!(check_name(NameKind::Avnm, "-a").is_err());
        assert!(check_name(NameKind::Avnm, &"a".repeat(65)).is_err());
        assert!(
            check_name(NameKind::Vnet, "vnet-hub-\u{0435}astus")
                .unwrap_err()
                .contains("U+0435")
        );
        assert!(check_name(NameKind::ResourceGroup, "rg-(x).y").is_ok());
        assert!(check_name(NameKind::ResourceGroup, "rg.").is_err());
        assert!(check_zone_name("globojava.com").is_ok());
        assert!(check_zone_name("globojava").is_err());
        assert!(check_record_name("database.westeurope").is_ok());
        assert!(check_record_name("bad..name").is_err());
    }

    #[test]
    fn ports() {
        assert_eq!(check_port_range("*").unwrap(), (0, 65535));
        assert_eq!(check_port_range("80").unwrap(), (80, 80));
        assert_eq!(check_port_range("1000-2000").unwrap(), (1000, 2000));
        assert!(check_port_range("2000-1000").is_err());
        assert!(check_port_range("70000").is_err());
        assert!(check_port_range("http").is_err());
    }

    #[test]
    fn regions() {
        assert!(check_region("westeurope").is_ok());
        assert!(
            check_region("West Europe")
                .unwrap_err()
                .contains("westeurope")
        );
        assert!(check_region("moon").is_err());
    }
}
