//! `Einsum` with one or two operands, as a batched matrix product.
//!
//! Each index letter of an equation such as `bhid,bhjd->bhij` is classified: in both
//! operands and the output (batch), in both but not the output (contracted), in one operand
//! and the output (free), or in one operand only (summed out first). The operands are then
//! permuted to `[batch, free, contracted]` and `[batch, contracted, free]`, reshaped to three
//! axes, multiplied with burn's `matmul` (so autodiff and every backend come for free), and
//! the product is reshaped and permuted into the output's order. Ellipses and repeated
//! letters within one operand (diagonals) are refused with a clear message.

use super::{float_input, one, OpCtx, OpResult};
use crate::error::OpError;
use crate::graph::Node;
use crate::value::{FloatValue, Value, MAX_RANK};

/// A parsed equation: the letters of each operand and of the output.
struct Equation {
    operands: Vec<Vec<char>>,
    output: Vec<char>,
}

fn parse(eq: &str, count: usize) -> Result<Equation, OpError> {
    let eq: String = eq.chars().filter(|c| !c.is_whitespace()).collect();
    if eq.contains("...") {
        return Err(OpError::new(format!(
            "Einsum equation '{eq}': ellipses are not supported"
        )));
    }
    let (lhs, rhs) = match eq.split_once("->") {
        Some((l, r)) => (l.to_string(), Some(r.to_string())),
        None => (eq.clone(), None),
    };
    let operands: Vec<Vec<char>> = lhs.split(',').map(|s| s.chars().collect()).collect();
    if operands.len() != count {
        return Err(OpError::new(format!(
            "Einsum equation '{eq}' names {} operands, the node has {count}",
            operands.len()
        )));
    }
    let output: Vec<char> = match rhs {
        Some(r) => r.chars().collect(),
        None => {
            // Implicit output: the letters that appear once, in alphabetical order.
            let mut once: Vec<char> = operands
                .iter()
                .flatten()
                .copied()
                .filter(|c| operands.iter().flatten().filter(|d| *d == c).count() == 1)
                .collect();
            once.sort_unstable();
            once
        }
    };
    for (k, op) in operands.iter().enumerate() {
        if let Some(c) = op.iter().find(|c| !c.is_ascii_alphabetic()) {
            return Err(OpError::new(format!(
                "Einsum equation '{eq}': operand {k} has the invalid index '{c}'"
            )));
        }
        let mut s = op.clone();
        s.sort_unstable();
        s.dedup();
        if s.len() != op.len() {
            return Err(OpError::new(format!(
                "Einsum equation '{eq}': repeated indices within one operand (diagonals) are not supported"
            )));
        }
    }
    if let Some(c) = output
        .iter()
        .find(|c| !operands.iter().any(|o| o.contains(c)))
    {
        return Err(OpError::new(format!(
            "Einsum equation '{eq}': output index '{c}' appears in no operand"
        )));
    }
    if operands.iter().any(|o| o.len() > MAX_RANK) || output.len() > MAX_RANK {
        return Err(OpError::new(format!(
            "Einsum equation '{eq}' has operands above rank {MAX_RANK}"
        )));
    }
    Ok(Equation { operands, output })
}

/// Size of each letter, checked for agreement between operands.
fn sizes(eq: &Equation, shapes: &[&[usize]]) -> Result<Vec<(char, usize)>, OpError> {
    let mut out: Vec<(char, usize)> = Vec::new();
    for (letters, shape) in eq.operands.iter().zip(shapes) {
        if letters.len() != shape.len() {
            return Err(OpError::new(format!(
                "Einsum operand '{}' has shape {shape:?} of another rank",
                letters.iter().collect::<String>()
            )));
        }
        for (&c, &d) in letters.iter().zip(shape.iter()) {
            match out.iter().find(|(e, _)| *e == c) {
                Some(&(_, d0)) if d0 != d => {
                    return Err(OpError::new(format!(
                        "Einsum index '{c}' has sizes {d0} and {d}"
                    )))
                }
                Some(_) => {}
                None => out.push((c, d)),
            }
        }
    }
    Ok(out)
}

/// Sums out the axes of `v` (with letters `letters`) whose letter `keep` rejects; returns
/// the reduced value and its remaining letters.
fn sum_out(
    v: FloatValue,
    letters: &[char],
    keep: impl Fn(char) -> bool,
) -> Result<(FloatValue, Vec<char>), OpError> {
    let mut t = v.t.clone();
    let mut shape = Vec::new();
    let mut kept = Vec::new();
    for (a, &c) in letters.iter().enumerate() {
        if keep(c) {
            shape.push(v.shape[a]);
            kept.push(c);
        } else {
            t = t.sum_dim(v.padded_axis(a));
        }
    }
    // The summed axes have size 1 now: dropping them is a reshape.
    let ones = (0..letters.len())
        .map(|a| if keep(letters[a]) { v.shape[a] } else { 1 })
        .collect();
    Ok((FloatValue::from_padded(t, ones).reshape(shape)?, kept))
}

/// Permutes `v` (letters `from`) into the order `to` (a permutation of `from`).
fn permute(v: &FloatValue, from: &[char], to: &[char]) -> FloatValue {
    let r = from.len();
    let off = MAX_RANK - r;
    let mut axes = [0usize; MAX_RANK];
    for (k, a) in axes.iter_mut().enumerate() {
        *a = if k < off {
            k
        } else {
            let c = to[k - off];
            off + from.iter().position(|&d| d == c).unwrap_or(0)
        };
    }
    let shape = to
        .iter()
        .map(|c| v.shape[from.iter().position(|d| d == c).unwrap_or(0)])
        .collect();
    FloatValue::from_padded(v.t.clone().permute(axes), shape)
}

pub(crate) fn einsum(ctx: &OpCtx<'_>, n: &Node, i: &[Option<Value>]) -> OpResult {
    let count = i.iter().filter(|v| v.is_some()).count();
    if count == 0 || count > 2 {
        return Err(OpError::new(format!(
            "Einsum with {count} operands is not supported (1 or 2)"
        )));
    }
    let eq = parse(&n.string("equation", "")?, count)?;
    let vals: Vec<FloatValue> = (0..count)
        .map(|k| float_input(ctx, i, k))
        .collect::<Result<_, _>>()?;
    let shapes: Vec<&[usize]> = vals.iter().map(|v| v.shape.as_slice()).collect();
    let size = sizes(&eq, &shapes)?;
    let size_of = |c: char| size.iter().find(|(d, _)| *d == c).map_or(1, |&(_, s)| s);
    let out = &eq.output;
    if count == 1 {
        let (v, letters) = sum_out(vals[0].clone(), &eq.operands[0], |c| out.contains(&c))?;
        return one(permute(&v, &letters, out));
    }
    let (la, lb) = (&eq.operands[0], &eq.operands[1]);
    // Letters only in one operand and not in the output are summed there first.
    let (a, la2) = sum_out(vals[0].clone(), la, |c| out.contains(&c) || lb.contains(&c))?;
    let (b, lb2) = sum_out(vals[1].clone(), lb, |c| out.contains(&c) || la.contains(&c))?;
    let (la, lb) = (la2, lb2);
    let batch: Vec<char> = la
        .iter()
        .copied()
        .filter(|c| lb.contains(c) && out.contains(c))
        .collect();
    let contracted: Vec<char> = la
        .iter()
        .copied()
        .filter(|c| lb.contains(c) && !out.contains(c))
        .collect();
    let free_a: Vec<char> = la.iter().copied().filter(|c| !lb.contains(c)).collect();
    let free_b: Vec<char> = lb.iter().copied().filter(|c| !la.contains(c)).collect();
    let prod = |cs: &[char]| cs.iter().map(|&c| size_of(c)).product::<usize>();
    let (nb, m, k, nn) = (
        prod(&batch),
        prod(&free_a),
        prod(&contracted),
        prod(&free_b),
    );
    let order_a: Vec<char> = [&batch[..], &free_a, &contracted].concat();
    let order_b: Vec<char> = [&batch[..], &contracted, &free_b].concat();
    let a3 = permute(&a, &la, &order_a).reshape(vec![nb, m, k])?;
    let b3 = permute(&b, &lb, &order_b).reshape(vec![nb, k, nn])?;
    let c3 = FloatValue::from_padded(a3.t.matmul(b3.t), vec![nb, m, nn]);
    let letters: Vec<char> = [&batch[..], &free_a, &free_b].concat();
    let c = c3.reshape(letters.iter().map(|&c| size_of(c)).collect())?;
    one(permute(&c, &letters, out))
}

#[cfg(test)]
mod tests {
    use super::parse;

    #[test]
    fn implicit_output_is_the_letters_used_once_sorted() {
        let e = parse("ij,jk", 2).unwrap();
        assert_eq!(e.output, ['i', 'k']);
    }

    #[test]
    fn diagonals_and_ellipses_are_refused() {
        assert!(parse("ii->i", 1).is_err());
        assert!(parse("...ij,jk->...ik", 2).is_err());
        assert!(parse("ij,jk->iz", 2).is_err());
        assert!(parse("ij->ij", 2).is_err());
    }
}
