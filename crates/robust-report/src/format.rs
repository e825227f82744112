//! Number formatting shared by the checks and the renderings.

/// A fraction as a percentage with one decimal: `0.7134` → `71.3%`.
pub(crate) fn pct(x: f64) -> String {
    format!("{:.1}%", x * 100.0)
}

/// An optional fraction as a percentage, `—` when absent.
pub(crate) fn pct_opt(x: Option<f64>) -> String {
    x.map(pct).unwrap_or_else(|| "—".to_string())
}

/// A number with at most six significant digits and no trailing zeros:
/// `0.1` → `0.1`, `8.0 / 255.0` → `0.0313725`, `4.0` → `4`.
pub(crate) fn num(x: f64) -> String {
    significant(x, 6)
}

/// A measured size with three significant digits, no trailing zeros: `0.0036470` → `0.00365`.
pub(crate) fn sig3(x: f64) -> String {
    significant(x, 3)
}

fn significant(x: f64, digits: i32) -> String {
    if !x.is_finite() {
        return x.to_string();
    }
    if x == 0.0 {
        return "0".to_string();
    }
    let magnitude = x.abs().log10().floor() as i32;
    let decimals = (digits - 1 - magnitude).clamp(0, 17) as usize;
    let s = format!("{x:.decimals$}");
    let s = if s.contains('.') {
        s.trim_end_matches('0').trim_end_matches('.').to_string()
    } else {
        s
    };
    if s == "-0" {
        "0".to_string()
    } else {
        s
    }
}

/// An epsilon for display: like [`num`], but a value that is a whole number of 1/255 steps
/// and would otherwise need many digits is written as a fraction: `8.0 / 255.0` → `8/255`,
/// while `0.2` (also 51/255) stays `0.2`.
pub(crate) fn eps(x: f64) -> String {
    let plain = num(x);
    let steps = x * 255.0;
    let k = steps.round();
    if plain.len() > 6 && k >= 1.0 && (steps - k).abs() < 1e-6 {
        format!("{k}/255")
    } else {
        plain
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_are_short_and_exact_enough() {
        assert_eq!(num(0.1), "0.1");
        assert_eq!(num(8.0 / 255.0), "0.0313725");
        assert_eq!(num(4.0), "4");
        assert_eq!(num(0.0), "0");
        assert_eq!(num(0.8), "0.8");
        assert_eq!(num(123456.0), "123456");
        assert_eq!(num(-0.25), "-0.25");
        assert_eq!(pct(0.7134), "71.3%");
        assert_eq!(pct_opt(None), "—");
        assert_eq!(sig3(0.003647058), "0.00365");
        assert_eq!(sig3(0.2325), "0.233");
        assert_eq!(sig3(1.0), "1");
        assert_eq!(eps(8.0 / 255.0), "8/255");
        assert_eq!(eps(0.2), "0.2");
        assert_eq!(eps(0.5), "0.5");
        assert_eq!(eps(0.0313), "0.0313");
    }
}
