//! The policies in force as `mfactl policies` prints them: readable text, or JSON for scripts.
//! Pure: a [`Policy`] in, text out.

use crate::policy::{duration_text, Policy, PolicySource, Targets};
use crate::util::escape_text as esc;
use serde_json::{json, Value};
use std::fmt::Write;

/// Where the policies came from, said in full.
fn source_line(source: &PolicySource) -> String {
    match source {
        PolicySource::BuiltIn => {
            "built-in (no --policies given, and no ./policies directory here)".to_string()
        }
        PolicySource::Example => "built-in example (the repository's policies/)".to_string(),
        PolicySource::WorkingDir => {
            "./policies (found in the working directory: roles.yaml and guardrails.yaml)"
                .to_string()
        }
        PolicySource::Dir(d) => {
            format!("--policies {} (its roles.yaml and guardrails.yaml)", esc(d))
        }
    }
}

pub fn text(p: &Policy) -> String {
    let mut out = String::new();
    let _ = writeln!(out, "Policies: {}\n", source_line(&p.source));
    let _ = writeln!(
        out,
        "Roles, tried in this order (a plan names the first that allows a change):"
    );
    if p.roles.is_empty() {
        let _ = writeln!(out, "  none: no change is allowed for anyone");
    }
    for r in &p.roles {
        let actions: Vec<&str> = r.actions.iter().map(|a| a.verb()).collect();
        let targets = match &r.targets {
            Targets::Any => "any user".to_string(),
            Targets::HoldingOnly(list) if list.is_empty() => "users holding no role".to_string(),
            Targets::HoldingOnly(list) => format!(
                "users holding no role, or only: {}",
                list.iter().map(|r| esc(r)).collect::<Vec<_>>().join(", ")
            ),
        };
        let _ = writeln!(out, "  {}", esc(&r.name));
        let _ = writeln!(
            out,
            "    actions: {}",
            if actions.is_empty() {
                "none".to_string()
            } else {
                actions.join(", ")
            }
        );
        let _ = writeln!(out, "    targets: {targets}");
    }
    let g = &p.guardrails;
    let _ = writeln!(out, "\nGuardrails:");
    if g.protected_users.is_empty() {
        let _ = writeln!(
            out,
            "  protected-users: none (nobody is protected; list your break-glass accounts in guardrails.yaml)"
        );
    } else {
        let _ = writeln!(out, "  protected-users:");
        for u in &g.protected_users {
            let _ = writeln!(out, "    - {}", esc(u));
        }
    }
    let _ = writeln!(out, "  max-users-per-apply: {}", g.max_users_per_apply);
    let _ = writeln!(
        out,
        "  max-future-skew: {}",
        duration_text(g.max_future_skew_secs)
    );
    out
}

pub fn json(p: &Policy) -> String {
    let roles: Vec<Value> = p
        .roles
        .iter()
        .map(|r| {
            json!({
                "name": r.name,
                "actions": r.actions.iter().map(|a| a.verb()).collect::<Vec<_>>(),
                "targets": match &r.targets {
                    Targets::Any => json!("any"),
                    Targets::HoldingOnly(list) => json!({"holding-only": list}),
                },
            })
        })
        .collect();
    let g = &p.guardrails;
    let v = json!({
        "source": p.source.to_string(),
        "roles": roles,
        "guardrails": {
            "protected-users": g.protected_users,
            "max-users-per-apply": g.max_users_per_apply,
            "max-future-skew": duration_text(g.max_future_skew_secs),
        },
    });
    let mut s = serde_json::to_string_pretty(&v).unwrap_or_default();
    s.push('\n');
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_built_in_policies_read_as_the_role_table_and_guardrails() {
        let t = text(&Policy::defaults());
        assert!(t.starts_with("Policies: built-in ("), "{t}");
        assert!(
            t.contains(
                "  global-administrator\n    actions: reset-password, require-reregistration, \
                 revoke-sessions, revoke-trusted-devices, delete-app-passwords\n    targets: any user\n"
            ),
            "{t}"
        );
        assert!(t.contains("protected-users: none"), "{t}");
        assert!(t.contains("max-users-per-apply: 500\n"), "{t}");
        assert!(t.contains("max-future-skew: 5m\n"), "{t}");
        let v: Value = serde_json::from_str(&json(&Policy::defaults())).unwrap();
        assert_eq!(v["source"], "built-in");
        assert_eq!(v["guardrails"]["protected-users"], json!([]));
        assert_eq!(v["roles"][0]["name"], "helpdesk-administrator");
        assert_eq!(v["roles"][3]["targets"], "any");
    }

    #[test]
    fn a_hostile_policies_directory_is_escaped() {
        let mut p = Policy::example();
        p.source = PolicySource::Dir("x\u{1b}[31m".into());
        let t = text(&p);
        assert!(!t.contains('\u{1b}'), "{t}");
        assert!(t.contains("breakglass@contoso.example"), "{t}");
    }
}
