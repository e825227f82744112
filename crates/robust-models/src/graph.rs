//! The interpreter's graph: ONNX's node list, with constants folded out.
//!
//! Both loaders produce this form: the ONNX loader from the protobuf, the safetensors loader
//! from an architecture description plus a weights file. One interpreter then runs both.

use std::collections::{BTreeMap, HashMap};

use crate::error::OpError;

/// Host-side tensor data of a constant.
#[derive(Clone, Debug, PartialEq)]
pub enum HostData {
    /// Float data (ONNX FLOAT and DOUBLE, stored as f32).
    F32(Vec<f32>),
    /// Integer data (ONNX INT8..INT64 and BOOL, stored as i64).
    I64(Vec<i64>),
}

/// A constant tensor held on the host until a model is placed on a device.
#[derive(Clone, Debug, PartialEq)]
pub struct HostTensor {
    /// The shape.
    pub shape: Vec<usize>,
    /// Row-major data.
    pub data: HostData,
}

impl HostTensor {
    /// Number of elements.
    pub fn numel(&self) -> usize {
        self.shape.iter().product()
    }
}

/// A node attribute.
#[derive(Clone, Debug, PartialEq)]
pub enum Attr {
    /// A float.
    Float(f32),
    /// An integer.
    Int(i64),
    /// A string.
    Str(String),
    /// A list of floats.
    Floats(Vec<f32>),
    /// A list of integers.
    Ints(Vec<i64>),
    /// A tensor.
    Tensor(HostTensor),
}

/// One operator application.
#[derive(Clone, Debug)]
pub struct Node {
    /// The ONNX operator type (`Conv`, `Gemm`, ...).
    pub op: String,
    /// The node's name (generated when the file has none).
    pub name: String,
    /// Input value names; an empty string is an omitted optional input.
    pub inputs: Vec<String>,
    /// Output value names.
    pub outputs: Vec<String>,
    /// Attributes by name.
    pub attrs: BTreeMap<String, Attr>,
}

impl Node {
    /// An integer attribute, or a default.
    pub fn int(&self, name: &str, default: i64) -> Result<i64, OpError> {
        match self.attrs.get(name) {
            None => Ok(default),
            Some(Attr::Int(v)) => Ok(*v),
            Some(other) => Err(OpError::new(format!(
                "attribute '{name}' should be an integer, found {other:?}"
            ))),
        }
    }

    /// A float attribute, or a default.
    pub fn float(&self, name: &str, default: f32) -> Result<f32, OpError> {
        match self.attrs.get(name) {
            None => Ok(default),
            Some(Attr::Float(v)) => Ok(*v),
            Some(Attr::Int(v)) => Ok(*v as f32),
            Some(other) => Err(OpError::new(format!(
                "attribute '{name}' should be a float, found {other:?}"
            ))),
        }
    }

    /// An integer-list attribute, if present.
    pub fn ints(&self, name: &str) -> Result<Option<Vec<i64>>, OpError> {
        match self.attrs.get(name) {
            None => Ok(None),
            Some(Attr::Ints(v)) => Ok(Some(v.clone())),
            Some(Attr::Int(v)) => Ok(Some(vec![*v])),
            Some(other) => Err(OpError::new(format!(
                "attribute '{name}' should be a list of integers, found {other:?}"
            ))),
        }
    }

    /// A string attribute, or a default.
    pub fn string(&self, name: &str, default: &str) -> Result<String, OpError> {
        match self.attrs.get(name) {
            None => Ok(default.to_string()),
            Some(Attr::Str(s)) => Ok(s.clone()),
            Some(other) => Err(OpError::new(format!(
                "attribute '{name}' should be a string, found {other:?}"
            ))),
        }
    }
}

/// A whole model graph.
#[derive(Clone, Debug)]
pub struct Graph {
    /// Nodes in topological order.
    pub nodes: Vec<Node>,
    /// Constants (initializers and folded `Constant` nodes) by value name. A `Model` moves
    /// them onto its device when it is assembled, leaving this empty.
    pub consts: HashMap<String, HostTensor>,
    /// The image input's value name.
    pub input: String,
    /// The input's declared dimensions after the batch axis (`None` where symbolic).
    pub input_dims: Vec<Option<usize>>,
    /// The input's declared batch size, when the file fixes it (`None` where symbolic).
    pub input_batch: Option<usize>,
    /// Output value names (the first one is the logits).
    pub outputs: Vec<String>,
    /// The default-domain opset version.
    pub opset: i64,
    /// Values removed by [`Graph::fuse`]: a convolution's own output, now replaced by the
    /// output of the BatchNormalization, Relu or residual sum folded into it (old name → new
    /// name).
    pub folded: HashMap<String, String>,
}

impl Graph {
    /// Makes a batch size `batch` baked into the graph symbolic where that is safe: every
    /// constant `Reshape` target whose first entry is `batch` gets `-1` there (or `0`, "copy
    /// the input's batch axis", when it already has a `-1`). This is what
    /// `torch.onnx.export(..., dynamo=True)` without a dynamic batch writes for a flatten.
    /// Returns the number of targets rewritten; the caller checks the result by running it.
    pub fn free_batch(&mut self, batch: usize) -> usize {
        let mut edits: Vec<(String, i64)> = Vec::new();
        for n in self.nodes.iter().filter(|n| n.op == "Reshape") {
            if let Some(t) = n.inputs.get(1).and_then(|s| self.consts.get(s)) {
                if let HostData::I64(d) = &t.data {
                    if d.len() >= 2 && d[0] == batch as i64 {
                        // With allowzero=1 (the dynamo exporter's default) a 0 means an
                        // empty axis, so only a free -1 can stand for the batch.
                        let allowzero = n.int("allowzero", 0).unwrap_or(1) != 0;
                        let value = match (d.contains(&-1), allowzero) {
                            (false, _) => -1,
                            (true, false) => 0,
                            (true, true) => continue,
                        };
                        edits.push((n.inputs[1].clone(), value));
                    }
                }
            }
        }
        edits.sort();
        edits.dedup();
        for (name, value) in &edits {
            if let Some(HostTensor {
                data: HostData::I64(d),
                ..
            }) = self.consts.get_mut(name)
            {
                d[0] = *value;
            }
        }
        let names = edits;
        self.input_batch = None;
        names.len()
    }

    /// How many nodes read each value, plus one for each graph output.
    fn readers(&self) -> HashMap<&str, usize> {
        let mut readers: HashMap<&str, usize> = HashMap::new();
        for n in &self.nodes {
            for i in n.inputs.iter().filter(|i| !i.is_empty()) {
                *readers.entry(i.as_str()).or_default() += 1;
            }
        }
        for o in &self.outputs {
            *readers.entry(o.as_str()).or_default() += 1;
        }
        readers
    }

    /// A float constant's data, if `name` is one.
    fn const_f32(&self, name: &str) -> Option<&[f32]> {
        match self.consts.get(name).map(|t| &t.data) {
            Some(HostData::F32(d)) => Some(d),
            _ => None,
        }
    }

    /// The attribute [`Graph::fuse_relus`] sets on a `Conv` or `Add` whose ReLU it absorbed.
    pub const FUSED_RELU: &'static str = "robust.fused_relu";

    /// The attribute [`Graph::fuse_residuals`] sets on a `Conv` that absorbed the residual
    /// sum after it: its fourth input is the value added to its output.
    pub const RESIDUAL: &'static str = "robust.residual";

    /// Rewrites the graph for speed without changing what it computes:
    /// [`Graph::fold_batch_norms`], then [`Graph::fuse_relus`], then
    /// [`Graph::fuse_residuals`]; then drops the constants no node reads any more. Returns
    /// the number of nodes removed.
    pub fn fuse(&mut self) -> usize {
        // Only this pass may set these attributes, never the model file.
        for n in &mut self.nodes {
            n.attrs.remove(Self::FUSED_RELU);
            n.attrs.remove(Self::RESIDUAL);
        }
        let removed = self.fold_batch_norms() + self.fuse_relus() + self.fuse_residuals();
        if removed > 0 {
            let readers = self.readers();
            let unread: Vec<String> = self
                .consts
                .keys()
                .filter(|name| !readers.contains_key(name.as_str()))
                .cloned()
                .collect();
            for name in unread {
                self.consts.remove(&name);
            }
        }
        removed
    }

    /// The index of the `op` node whose output node `k` reads as its first input, if that
    /// node has one output and node `k` is its only reader (and it is no graph output).
    fn sole_producer(&self, k: usize, op: &str) -> Option<usize> {
        let x = self.nodes[k].inputs.first()?.as_str();
        let conv = self.nodes[..k]
            .iter()
            .rposition(|n| n.outputs.first().map(String::as_str) == Some(x))?;
        let c = &self.nodes[conv];
        let readers = self
            .nodes
            .iter()
            .flat_map(|n| &n.inputs)
            .filter(|i| *i == x);
        let only_reader = readers.count() == 1 && !self.outputs.iter().any(|o| o == x);
        (c.op == op && c.outputs.len() == 1 && only_reader).then_some(conv)
    }

    /// Removes node `k`, whose only input is the output of node `conv` (a `Conv`, or an
    /// `Add` for a fused ReLU), giving `conv` node `k`'s output name.
    fn absorb(&mut self, conv: usize, k: usize) {
        let gone = self.nodes.remove(k);
        let new = gone.outputs[0].clone();
        let old = std::mem::replace(&mut self.nodes[conv].outputs[0], new.clone());
        self.folded.insert(old, new);
    }

    /// Marks every `Conv`, and every two-input `Add` (a residual block's sum), whose output
    /// only a `Relu` reads with [`Self::FUSED_RELU`] and removes the `Relu`: the op then
    /// applies the ReLU itself (in one pass on the CPU, keeping one bit per value for the
    /// backward pass). Returns the number of `Relu` nodes removed.
    pub fn fuse_relus(&mut self) -> usize {
        let mut fused = 0;
        let mut k = 1;
        while k < self.nodes.len() {
            let n = &self.nodes[k];
            let candidate = n.op == "Relu" && n.inputs.len() == 1 && n.outputs.len() == 1;
            let producer = candidate
                .then(|| {
                    self.sole_producer(k, "Conv").or_else(|| {
                        self.sole_producer(k, "Add")
                            .filter(|&a| self.nodes[a].inputs.len() == 2)
                    })
                })
                .flatten();
            match producer {
                Some(conv) => {
                    self.nodes[conv]
                        .attrs
                        .insert(Self::FUSED_RELU.into(), Attr::Int(1));
                    self.absorb(conv, k);
                    fused += 1;
                }
                None => k += 1,
            }
        }
        fused
    }

    /// Folds every two-input `Add` (a residual block's sum, with its fused ReLU if it has
    /// one) into the `Conv` that computes one of its operands when that `Conv` has no fused
    /// ReLU and the sum is its output's only reader: the `Conv` gets the other operand as a
    /// fourth input, [`Self::RESIDUAL`] and the sum's ReLU, takes the sum's output name and
    /// moves to the sum's place (where the other operand exists). On the CPU the products
    /// then add the operand (and apply the ReLU) as they store each output, instead of a
    /// pass over memory that reads both and writes the sum. Returns the number of `Add`
    /// nodes removed.
    pub fn fuse_residuals(&mut self) -> usize {
        let readers = self.readers();
        let mut plans = Vec::new();
        for (k, add) in self.nodes.iter().enumerate() {
            if add.op != "Add" || add.inputs.len() != 2 || add.outputs.len() != 1 {
                continue;
            }
            let conv = (0..2).find_map(|side| {
                let y = add.inputs[side].as_str();
                let p = self.nodes[..k]
                    .iter()
                    .rposition(|n| n.outputs.iter().any(|o| o == y))?;
                let c = &self.nodes[p];
                let fits = c.op == "Conv"
                    && c.outputs.len() == 1
                    && (2..=3).contains(&c.inputs.len())
                    && !c.attrs.contains_key(Self::FUSED_RELU)
                    && readers.get(y) == Some(&1)
                    && add.inputs[1 - side] != y;
                fits.then_some((p, side))
            });
            if let Some((p, side)) = conv {
                plans.push((p, k, side));
            }
        }
        let mut fused: HashMap<usize, Node> = HashMap::new();
        let mut gone = std::collections::HashSet::new();
        for &(p, k, side) in &plans {
            let add = &self.nodes[k];
            let mut conv = self.nodes[p].clone();
            conv.inputs.resize(3, String::new());
            conv.inputs.push(add.inputs[1 - side].clone());
            conv.attrs.insert(Self::RESIDUAL.into(), Attr::Int(1));
            if let Some(relu) = add.attrs.get(Self::FUSED_RELU) {
                conv.attrs.insert(Self::FUSED_RELU.into(), relu.clone());
            }
            let old = std::mem::replace(&mut conv.outputs[0], add.outputs[0].clone());
            self.folded.insert(old, add.outputs[0].clone());
            fused.insert(k, conv);
            gone.insert(p);
        }
        let nodes = std::mem::take(&mut self.nodes);
        self.nodes = nodes
            .into_iter()
            .enumerate()
            .filter(|(i, _)| !gone.contains(i))
            .map(|(i, n)| fused.remove(&i).unwrap_or(n))
            .collect();
        plans.len()
    }

    /// Folds every `BatchNormalization` that reads a `Conv`'s output (and is its only reader)
    /// into that convolution's weights and bias, as inference engines do (the replaced
    /// constants stay in [`Graph::consts`] until [`Graph::fuse`] drops the unread ones): with
    /// `a = scale / sqrt(var + ε)`, `BN(conv(x, W) + b) = conv(x, W·a) + (b − mean)·a + bias`
    /// per output channel (computed in f64, stored as f32). The folded graph computes the
    /// same function with one node less per pair, and its gradient with respect to the input
    /// is the same, so attacks see the same model, faster. Pairs that do not have constant
    /// parameters of the right sizes are left alone (the BatchNormalization op then reports
    /// any problem). Returns the number of pairs folded.
    pub fn fold_batch_norms(&mut self) -> usize {
        let mut folded = 0;
        let mut k = 1;
        while k < self.nodes.len() {
            match self.fold_pair(k) {
                Some(conv) => {
                    self.absorb(conv, k);
                    folded += 1;
                }
                None => k += 1,
            }
        }
        folded
    }

    /// If node `k` is a foldable BatchNormalization, rewrites its producer Conv's weights and
    /// bias (under new constant names) and returns the Conv's index; the caller removes `k`.
    fn fold_pair(&mut self, k: usize) -> Option<usize> {
        let bn = &self.nodes[k];
        if bn.op != "BatchNormalization"
            || bn.inputs.len() != 5
            || bn.outputs.iter().skip(1).any(|o| !o.is_empty())
        {
            return None;
        }
        let conv = self.sole_producer(k, "Conv")?;
        let c = &self.nodes[conv];
        let eps = f64::from(bn.float("epsilon", 1e-5).ok()?);
        let w_name = c.inputs.get(1)?.clone();
        let w_shape = self.consts.get(&w_name)?.shape.clone();
        let w = self.const_f32(&w_name)?;
        let out_channels = *w_shape.first()?;
        if out_channels == 0 || w.len() % out_channels != 0 {
            return None;
        }
        let params: Vec<&[f32]> = bn.inputs[1..]
            .iter()
            .map(|p| self.const_f32(p).filter(|d| d.len() == out_channels))
            .collect::<Option<_>>()?;
        let (scale, beta, mean, var) = (params[0], params[1], params[2], params[3]);
        let b: Vec<f32> = match c.inputs.get(2).filter(|b| !b.is_empty()) {
            Some(b) => self
                .const_f32(b)
                .filter(|d| d.len() == out_channels)?
                .to_vec(),
            None => vec![0.0; out_channels],
        };
        let a: Vec<f64> = (0..out_channels)
            .map(|o| f64::from(scale[o]) / (f64::from(var[o]) + eps).sqrt())
            .collect();
        if a.iter().any(|v| !v.is_finite()) {
            return None;
        }
        let per_channel = w.len() / out_channels;
        let new_w: Vec<f32> = w
            .iter()
            .enumerate()
            .map(|(i, &v)| (f64::from(v) * a[i / per_channel]) as f32)
            .collect();
        let new_b: Vec<f32> = (0..out_channels)
            .map(|o| ((f64::from(b[o]) - f64::from(mean[o])) * a[o] + f64::from(beta[o])) as f32)
            .collect();
        let bn_name = bn.name.clone();
        let (w_new, b_new) = (
            format!("{w_name}::folded:{bn_name}"),
            format!("{bn_name}::folded_bias"),
        );
        self.consts.insert(
            w_new.clone(),
            HostTensor {
                shape: w_shape,
                data: HostData::F32(new_w),
            },
        );
        self.consts.insert(
            b_new.clone(),
            HostTensor {
                shape: vec![out_channels],
                data: HostData::F32(new_b),
            },
        );
        let c = &mut self.nodes[conv];
        c.inputs.resize(3, String::new());
        c.inputs[1] = w_new;
        c.inputs[2] = b_new;
        Some(conv)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn f32s(shape: Vec<usize>, v: Vec<f32>) -> HostTensor {
        HostTensor {
            shape,
            data: HostData::F32(v),
        }
    }

    fn node(op: &str, name: &str, inputs: &[&str], outputs: &[&str]) -> Node {
        Node {
            op: op.into(),
            name: name.into(),
            inputs: inputs.iter().map(|s| s.to_string()).collect(),
            outputs: outputs.iter().map(|s| s.to_string()).collect(),
            attrs: BTreeMap::from([("epsilon".to_string(), Attr::Float(0.5))]),
        }
    }

    /// Conv (2 output channels, 1×1 kernel over 2 input channels, with bias) → BN → Relu.
    fn conv_bn_graph(conv_output_also_read: bool) -> Graph {
        let mut consts = HashMap::new();
        consts.insert("w".into(), f32s(vec![2, 2, 1, 1], vec![1.0, 2.0, 3.0, 4.0]));
        consts.insert("b".into(), f32s(vec![2], vec![0.5, -1.0]));
        consts.insert("scale".into(), f32s(vec![2], vec![2.0, 3.0]));
        consts.insert("beta".into(), f32s(vec![2], vec![0.25, 1.0]));
        consts.insert("mean".into(), f32s(vec![2], vec![1.0, -2.0]));
        consts.insert("var".into(), f32s(vec![2], vec![3.5, 8.5]));
        let mut nodes = vec![
            node("Conv", "conv", &["x", "w", "b"], &["y"]),
            node(
                "BatchNormalization",
                "bn",
                &["y", "scale", "beta", "mean", "var"],
                &["z"],
            ),
            node("Relu", "relu", &["z"], &["out"]),
        ];
        if conv_output_also_read {
            nodes.push(node("Relu", "tap", &["y"], &["y2"]));
        }
        graph(nodes, consts, &["out"])
    }

    /// A graph of `nodes` on a `[2, 1, 1]` input `x`.
    fn graph(nodes: Vec<Node>, consts: HashMap<String, HostTensor>, outputs: &[&str]) -> Graph {
        Graph {
            nodes,
            consts,
            input: "x".into(),
            input_dims: vec![Some(2), Some(1), Some(1)],
            input_batch: None,
            outputs: outputs.iter().map(|o| o.to_string()).collect(),
            opset: 17,
            folded: HashMap::new(),
        }
    }

    #[test]
    fn conv_then_batch_norm_folds_into_the_conv() {
        let mut g = conv_bn_graph(false);
        assert_eq!(g.fold_batch_norms(), 1);
        let ops: Vec<&str> = g.nodes.iter().map(|n| n.op.as_str()).collect();
        assert_eq!(ops, ["Conv", "Relu"]);
        assert_eq!(g.fuse(), 1, "then the ReLU is fused");
        assert_eq!(g.nodes.len(), 1);
        assert_eq!(g.nodes[0].outputs, ["out"]);
        assert_eq!(g.nodes[0].attrs.get(Graph::FUSED_RELU), Some(&Attr::Int(1)));
        let conv = &g.nodes[0];
        let folded = [("y", "z"), ("z", "out")].map(|(a, b)| (a.to_string(), b.to_string()));
        assert_eq!(g.folded, HashMap::from(folded));
        // ε = 0.5: a = scale / sqrt(var + ε) = [2 / sqrt(4), 3 / sqrt(9)] = [1, 1].
        // W' = W·a = W; b' = (b − mean)·a + beta = [0.5 − 1 + 0.25, −1 + 2 + 1] = [−0.25, 2].
        assert_eq!(g.const_f32(&conv.inputs[1]).unwrap(), [1.0, 2.0, 3.0, 4.0]);
        assert_eq!(g.const_f32(&conv.inputs[2]).unwrap(), [-0.25, 2.0]);
        // The unread originals are gone; nothing else is.
        for gone in ["w", "b", "scale", "beta", "mean", "var"] {
            assert!(!g.consts.contains_key(gone), "{gone} kept");
        }
        assert_eq!(g.consts.len(), 2);
    }

    #[test]
    fn scale_other_than_one_multiplies_the_weights() {
        let mut g = conv_bn_graph(false);
        g.consts
            .insert("scale".into(), f32s(vec![2], vec![4.0, -1.5]));
        assert_eq!(g.fold_batch_norms(), 1);
        let conv = &g.nodes[0];
        // a = [4 / 2, −1.5 / 3] = [2, −0.5].
        assert_eq!(
            g.const_f32(&conv.inputs[1]).unwrap(),
            [2.0, 4.0, -1.5, -2.0]
        );
        // b' = [(0.5 − 1)·2 + 0.25, (−1 + 2)·(−0.5) + 1] = [−0.75, 0.5].
        assert_eq!(g.const_f32(&conv.inputs[2]).unwrap(), [-0.75, 0.5]);
    }

    #[test]
    fn a_conv_output_read_elsewhere_is_not_folded() {
        let mut g = conv_bn_graph(true);
        assert_eq!(g.fuse(), 0);
        assert_eq!(g.nodes.len(), 4);
        assert_eq!(g.consts.len(), 6);
    }

    /// A residual block's `relu(conv(x) + x)`: the Relu fuses into the two-input Add, and
    /// the Add into the Conv (which takes `x` as a fourth input and moves to the sum's
    /// place); an Add whose sum is read elsewhere too, and a Relu on an input, stay as they
    /// are.
    #[test]
    fn a_relu_after_a_sum_fuses_into_the_add_and_the_sum_into_the_conv() {
        let residual = |sum_also_read: bool| {
            let mut nodes = vec![
                node("Conv", "conv", &["x", "w"], &["y"]),
                node("Relu", "relu_x", &["x"], &["x2"]),
                node("Add", "add", &["y", "x"], &["s"]),
                node("Relu", "relu", &["s"], &["out"]),
            ];
            if sum_also_read {
                nodes.push(node("Neg", "neg", &["s"], &["t"]));
            }
            let mut consts = HashMap::new();
            consts.insert("w".into(), f32s(vec![2, 2, 1, 1], vec![1.0, 2.0, 3.0, 4.0]));
            graph(nodes, consts, &["out", "x2"])
        };
        let mut g = residual(false);
        assert_eq!(g.fuse(), 2);
        let ops: Vec<&str> = g.nodes.iter().map(|n| n.op.as_str()).collect();
        assert_eq!(ops, ["Relu", "Conv"]);
        let conv = &g.nodes[1];
        assert_eq!(conv.inputs, ["x", "w", "", "x"]);
        assert_eq!(conv.outputs, ["out"]);
        assert_eq!(conv.attrs.get(Graph::FUSED_RELU), Some(&Attr::Int(1)));
        assert_eq!(conv.attrs.get(Graph::RESIDUAL), Some(&Attr::Int(1)));
        let folded = [("s", "out"), ("y", "out")].map(|(a, b)| (a.to_string(), b.to_string()));
        assert_eq!(g.folded, HashMap::from(folded));
        // The sum read elsewhere keeps its node and its ReLU; the Conv, read only by the
        // sum, still takes it in.
        let mut g = residual(true);
        assert_eq!(g.fuse(), 1);
        let ops: Vec<&str> = g.nodes.iter().map(|n| n.op.as_str()).collect();
        assert_eq!(ops, ["Relu", "Conv", "Relu", "Neg"]);
        assert_eq!(g.nodes[1].outputs, ["s"]);
        assert!(!g.nodes[1].attrs.contains_key(Graph::FUSED_RELU));
    }

    /// A Conv with its own ReLU, or whose output another node reads too, keeps the sum
    /// apart; so does one that is no operand of the sum's producer chain (a sum of two
    /// inputs).
    #[test]
    fn a_sum_stays_apart_from_a_conv_it_cannot_absorb() {
        for (extra, relu_first) in [(true, false), (false, true)] {
            let mut nodes = vec![node("Conv", "conv", &["x", "w"], &["y"])];
            if relu_first {
                nodes.push(node("Relu", "r", &["y"], &["y"]));
            }
            nodes.push(node("Add", "add", &["y", "x"], &["s"]));
            if extra {
                nodes.push(node("Neg", "neg", &["y"], &["t"]));
            }
            let mut consts = HashMap::new();
            consts.insert("w".into(), f32s(vec![2, 2, 1, 1], vec![1.0, 2.0, 3.0, 4.0]));
            let mut g = graph(nodes, consts, &["s"]);
            g.fuse();
            assert!(
                g.nodes.iter().any(|n| n.op == "Add"),
                "extra {extra} relu {relu_first}"
            );
            assert!(g
                .nodes
                .iter()
                .all(|n| !n.attrs.contains_key(Graph::RESIDUAL)));
        }
        let mut g = graph(
            vec![node("Add", "add", &["x", "x"], &["s"])],
            HashMap::new(),
            &["s"],
        );
        assert_eq!(g.fuse(), 0);
    }

    #[test]
    fn the_residual_attribute_cannot_come_from_a_file() {
        let mut g = conv_bn_graph(true);
        g.nodes[0]
            .attrs
            .insert(Graph::RESIDUAL.into(), Attr::Int(1));
        g.fuse();
        assert!(!g.nodes[0].attrs.contains_key(Graph::RESIDUAL));
    }

    #[test]
    fn the_fused_relu_attribute_cannot_come_from_a_file() {
        let mut g = conv_bn_graph(true);
        g.nodes[0]
            .attrs
            .insert(Graph::FUSED_RELU.into(), Attr::Int(1));
        assert_eq!(g.fuse(), 0);
        assert!(!g.nodes[0].attrs.contains_key(Graph::FUSED_RELU));
    }

    #[test]
    fn non_constant_or_missized_parameters_are_not_folded() {
        let mut g = conv_bn_graph(false);
        g.consts
            .insert("var".into(), f32s(vec![3], vec![1.0, 1.0, 1.0]));
        assert_eq!(g.fold_batch_norms(), 0);
        let mut g = conv_bn_graph(false);
        g.consts.remove("mean");
        assert_eq!(g.fold_batch_norms(), 0);
    }
}
