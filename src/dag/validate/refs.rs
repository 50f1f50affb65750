//! Templates: which steps and parameters a template may read, and branch targets.

use super::*;

/// Which steps a template may read.
#[derive(Clone, Copy)]
pub(super) enum Upstream<'a> {
    /// Any step (DAG `outputs`, resolved when the execution is over).
    Any,
    /// Only the ancestors of `step` (its params and condition); `None` when
    /// they are unknown because of a cycle.
    Of {
        step: &'a str,
        ancestors: Option<&'a BitSet>,
    },
}

pub(super) struct RefCheck<'a> {
    pub(super) declared: &'a HashSet<String>,
    pub(super) index: &'a HashMap<&'a str, usize>,
    /// False when `steps` itself is missing or unusable (already an error):
    /// then every step reference would be "unknown", which is only noise.
    pub(super) steps_known: bool,
}

impl RefCheck<'_> {
    pub(super) fn check(&self, path: &str, tpl: &str, upstream: Upstream<'_>, report: &mut Report) {
        let analysis = match template::analyze(tpl) {
            Ok(a) => a,
            Err(e) => {
                report.error(format!("{path}: {e}"));
                return;
            }
        };
        for reference in &analysis.references {
            match reference {
                Reference::Param(name) if !self.declared.contains(name) => {
                    report.error(format!("{path}: unknown parameter '{name}'"));
                }
                Reference::Param(_) => {}
                Reference::Step(_) if !self.steps_known => {}
                Reference::Step(id) => match (self.index.get(id.as_str()), upstream) {
                    (None, _) => report.error(format!("{path}: unknown step '{id}'")),
                    (
                        Some(&j),
                        Upstream::Of {
                            step,
                            ancestors: Some(ancestors),
                        },
                    ) if !ancestors.contains(j) => {
                        report.error(format!(
                            "{path}: step '{id}' is not an upstream dependency of '{step}'"
                        ));
                    }
                    _ => {}
                },
            }
        }
        for name in &analysis.unknown_variables {
            report.warn(format!(
                "{path}: unknown variable '{name}' (a template can read 'params' and 'steps')"
            ));
        }
    }
}

/// A `conditional` step's branch targets: an unknown step is an error; a
/// target that does not depend on the conditional step may run (or have run)
/// before the branch is chosen, so skipping it would not take effect.
pub(super) fn check_branches(
    i: usize,
    step: &StepDoc<'_>,
    index: &HashMap<&str, usize>,
    ancestors: &[Option<BitSet>],
    report: &mut Report,
) {
    if step.action != Some("conditional") {
        return;
    }
    let branches = step
        .params
        .and_then(|p| p.get("branches"))
        .and_then(Value::as_array);
    for (k, branch) in branches.into_iter().flatten().enumerate() {
        let target = branch.get("target_step").and_then(Value::as_str);
        let Some(target) = target.filter(|t| !t.is_empty() && !template::is_template(t)) else {
            continue;
        };
        let path = format!("steps.{}.params.branches.{k}.target_step", step.label);
        match index.get(target) {
            None => report.error(format!("{path}: unknown step '{target}'")),
            Some(&j) => {
                if ancestors[j].as_ref().is_some_and(|a| !a.contains(i)) {
                    report.warn(format!(
                        "{path}: step '{target}' does not depend on '{}', so it may run before the branch is chosen",
                        step.label
                    ));
                }
            }
        }
    }
}
