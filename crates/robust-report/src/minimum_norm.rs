//! One line on a minimum-norm attack (Carlini–Wagner, DeepFool): the median of the smallest
//! adversarial perturbations it found, read from its parameters.
//!
//! The attack's `params` carry `median_perturbation`: `median` (a number, or `null` when the
//! median is +∞), `points` (the points classified correctly when clean, over which the
//! median is taken) and `unbroken` (those of them no perturbation broke, counted as +∞).
//! This turns it into the line the terminal, Markdown and HTML reports show under the
//! attack's robust accuracy per ε.

use serde_json::{Map, Value};

/// "median smallest perturbation 1.23 over the 987 points classified correctly (3 unbroken,
/// counted as +∞)", or `None` for an attack that is not a minimum-norm attack.
pub fn median_perturbation_line(params: &Map<String, Value>) -> Option<String> {
    let m = params.get("median_perturbation")?.as_object()?;
    let points = m.get("points")?.as_u64()?;
    let unbroken = m.get("unbroken")?.as_u64()?;
    let median = match m.get("median")? {
        Value::Null => "+∞".to_string(),
        v => format!("{:.4}", v.as_f64()?),
    };
    Some(format!(
        "median smallest perturbation {median} over the {points} points classified \
         correctly ({unbroken} unbroken, counted as +∞); a point is robust at ε when its \
         smallest perturbation exceeds ε"
    ))
}

#[cfg(test)]
mod tests {
    use super::median_perturbation_line;

    #[test]
    fn a_minimum_norm_attack_gets_its_median() {
        let params = serde_json::json!({
            "median_perturbation": {"median": 1.23456, "points": 987, "unbroken": 3,
                                    "unbroken_counted_as": "+inf"}
        });
        assert_eq!(
            median_perturbation_line(params.as_object().unwrap()).unwrap(),
            "median smallest perturbation 1.2346 over the 987 points classified correctly \
             (3 unbroken, counted as +∞); a point is robust at ε when its smallest \
             perturbation exceeds ε"
        );
        let inf = serde_json::json!({
            "median_perturbation": {"median": null, "points": 4, "unbroken": 2}
        });
        assert!(median_perturbation_line(inf.as_object().unwrap())
            .unwrap()
            .starts_with("median smallest perturbation +∞ over the 4 points"));
        assert_eq!(median_perturbation_line(&serde_json::Map::new()), None);
    }
}
