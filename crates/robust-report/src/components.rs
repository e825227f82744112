//! One line on an ensemble attack's components (AutoAttack), read from its parameters.
//!
//! The attack's `params` carry `components_by_eps` (per ε, each component's robust accuracy
//! after it ran and the samples it broke); this turns them into the line the terminal,
//! Markdown and HTML reports show.

use serde_json::{Map, Value};

/// "robust accuracy after each component — ε 0.1: apgd-ce 43.9% (539 broken) → apgd-t
/// 42.8% (11 broken) → …", or `None` for an attack that is not an ensemble.
pub fn components_line(params: &Map<String, Value>) -> Option<String> {
    let per_eps = params.get("components_by_eps")?.as_array()?;
    let eps_parts: Vec<String> = per_eps
        .iter()
        .filter_map(|e| {
            let eps = e.get("eps")?.as_f64()?;
            let chain: Vec<String> = e
                .get("components")?
                .as_array()?
                .iter()
                .filter_map(|c| {
                    let name = c.get("component")?.as_str()?;
                    let acc = c.get("robust_accuracy_after")?.as_f64()?;
                    let broken = c.get("broken")?.as_array()?.len();
                    Some(format!("{name} {:.1}% ({broken} broken)", acc * 100.0))
                })
                .collect();
            Some(format!("ε {eps}: {}", chain.join(" → ")))
        })
        .collect();
    (!eps_parts.is_empty()).then(|| {
        format!(
            "robust accuracy after each component — {}",
            eps_parts.join("; ")
        )
    })
}

#[cfg(test)]
mod tests {
    use super::components_line;

    #[test]
    fn an_ensemble_gets_its_chain() {
        let params = serde_json::json!({
            "components_by_eps": [{"eps": 0.1, "components": [
                {"component": "apgd-ce", "robust_accuracy_after": 0.44, "broken": [1, 2]},
                {"component": "square", "robust_accuracy_after": 0.43, "broken": [5]}
            ]}, {"eps": 0.2, "components": [
                {"component": "apgd-ce", "robust_accuracy_after": 0.0, "broken": [3]}
            ]}]
        });
        let line = components_line(params.as_object().unwrap()).unwrap();
        assert_eq!(
            line,
            "robust accuracy after each component — ε 0.1: apgd-ce 44.0% (2 broken) → square \
             43.0% (1 broken); ε 0.2: apgd-ce 0.0% (1 broken)"
        );
        assert_eq!(components_line(&serde_json::Map::new()), None);
    }
}
