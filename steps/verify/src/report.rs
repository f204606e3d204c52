//! The verify report: named checks, each passing or failing with its differences
//! (resource, field, expected, actual), as JSON and as a readable summary.

use serde::Serialize;
use serde_json::Value;

/// One difference between the intent and Azure.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Difference {
    /// ARM resource id (or a VNet pair for invariants).
    pub resource: String,
    /// The field, e.g. `properties.priority`, `membership[all-prod-spokes]`, `exists`.
    pub field: String,
    /// What the intent says.
    pub expected: Value,
    /// What Azure says (`null` when absent).
    pub actual: Value,
    /// Regions where the difference was seen (per-region reads); empty otherwise.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub regions: Vec<String>,
}

impl Difference {
    /// A difference.
    pub fn new(
        resource: impl Into<String>,
        field: impl Into<String>,
        expected: impl Into<Value>,
        actual: impl Into<Value>,
    ) -> Self {
        Difference {
            resource: resource.into(),
            field: field.into(),
            expected: expected.into(),
            actual: actual.into(),
            regions: Vec::new(),
        }
    }

    /// A resource the intent declares that does not exist.
    pub fn missing(resource: impl Into<String>) -> Self {
        Difference::new(resource, "exists", true, false)
    }
}

/// One named check.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Check {
    /// Name, e.g. `dns-links`.
    pub name: String,
    /// The `--only` category it belongs to.
    pub category: &'static str,
    /// Whether it holds.
    pub passed: bool,
    /// What was checked (counts), for the summary.
    pub checked: usize,
    /// The differences (empty when passed).
    pub differences: Vec<Difference>,
    /// Notes (e.g. what could not be observed).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub notes: Vec<String>,
}

impl Check {
    /// A check from its differences; same-looking differences seen in several regions are
    /// merged into one with the regions listed.
    pub fn new(
        name: &str,
        category: &'static str,
        checked: usize,
        differences: Vec<Difference>,
    ) -> Self {
        let mut merged: Vec<Difference> = Vec::new();
        for d in differences {
            match merged.iter_mut().find(|m| {
                m.resource == d.resource
                    && m.field == d.field
                    && m.expected == d.expected
                    && m.actual == d.actual
            }) {
                Some(m) => {
                    for r in d.regions {
                        if !m.regions.contains(&r) {
                            m.regions.push(r);
                        }
                    }
                }
                None => merged.push(d),
            }
        }
        Check {
            name: name.to_string(),
            category,
            passed: merged.is_empty(),
            checked,
            differences: merged,
            notes: Vec::new(),
        }
    }

    /// Adds a note.
    pub fn note(mut self, n: impl Into<String>) -> Self {
        self.notes.push(n.into());
        self
    }
}

/// The whole report.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Report {
    /// `verify`.
    pub step: &'static str,
    /// The run key.
    pub run_key: String,
    /// The intent digest.
    pub intent_digest: String,
    /// `--only`.
    pub only: String,
    /// Whether any check failed.
    pub drift: bool,
    /// Number of differences.
    pub changes: usize,
    /// The checks, in order.
    pub checks: Vec<Check>,
    /// Observed effective membership per VNet (group names), incl. dynamic members.
    #[serde(skip_serializing_if = "Value::is_null")]
    pub membership: Value,
}

impl Report {
    /// Builds the report from checks.
    pub fn new(
        run_key: &str,
        intent_digest: &str,
        only: &str,
        checks: Vec<Check>,
        membership: Value,
    ) -> Self {
        let changes = checks.iter().map(|c| c.differences.len()).sum();
        Report {
            step: crate::STEP,
            run_key: run_key.into(),
            intent_digest: intent_digest.into(),
            only: only.into(),
            drift: checks.iter().any(|c| !c.passed),
            changes,
            checks,
            membership,
        }
    }

    /// The readable summary: one line per check, then its differences indented.
    pub fn render(&self) -> String {
        let mut out = String::new();
        for c in &self.checks {
            let mark = if c.passed { '✓' } else { '✗' };
            out.push_str(&format!("{mark} {} ({} checked)\n", c.name, c.checked));
            for d in &c.differences {
                out.push_str(&format!(
                    "    {} {}: expected {}, actual {}",
                    crate::report::short(&d.resource),
                    d.field,
                    d.expected,
                    d.actual
                ));
                if !d.regions.is_empty() {
                    out.push_str(&format!(" [{}]", d.regions.join(", ")));
                }
                out.push('\n');
            }
            for n in &c.notes {
                out.push_str(&format!("    note: {n}\n"));
            }
        }
        out.push_str(&format!(
            "{}: {} checks, {} failed, {} differences\n",
            if self.drift { "DRIFT" } else { "OK" },
            self.checks.len(),
            self.checks.iter().filter(|c| !c.passed).count(),
            self.changes
        ));
        out
    }
}

/// A resource id shortened for the summary: from the provider's resource path on
/// (`networkManagers/avnm/networkGroups/g`), the full id stays in the JSON.
pub fn short(id: &str) -> &str {
    match id.to_ascii_lowercase().rfind("/providers/") {
        Some(i) => {
            let rest = &id[i + "/providers/".len()..];
            rest.split_once('/').map_or(rest, |(_, r)| r)
        }
        None => id,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn same_difference_in_several_regions_is_merged() {
        let mut a = Difference::new("/x", "properties.priority", 100, 150);
        a.regions = vec!["eastus".into()];
        let mut b = a.clone();
        b.regions = vec!["westus".into()];
        let c = Check::new("active-security-admin", "security-admin", 2, vec![a, b]);
        assert!(!c.passed);
        assert_eq!(c.differences.len(), 1);
        assert_eq!(c.differences[0].regions, vec!["eastus", "westus"]);
    }

    #[test]
    fn summary_has_one_line_per_check_and_the_differences() {
        let ok = Check::new("dns-zone", "dns", 1, vec![]);
        let bad = Check::new(
            "dns-links",
            "dns",
            21,
            vec![Difference::missing(
                "/subscriptions/s/resourceGroups/rg/providers/Microsoft.Network/privateDnsZones/z/virtualNetworkLinks/l",
            )],
        );
        let r = Report::new("k", "sha256:x", "all", vec![ok, bad], Value::Null);
        assert!(r.drift);
        assert_eq!(r.changes, 1);
        let s = r.render();
        assert!(s.contains("✓ dns-zone"), "{s}");
        assert!(
            s.contains("✗ dns-links (21 checked)\n    privateDnsZones/z/virtualNetworkLinks/l exists: expected true, actual false"),
            "{s}"
        );
    }
}
