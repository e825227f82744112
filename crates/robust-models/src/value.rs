//! Run-time values of the graph interpreter.
//!
//! burn's tensors carry their rank in the type (`Tensor<D>`), while an ONNX graph's ranks
//! are only known when it runs. The interpreter therefore stores every float tensor at one
//! fixed rank, [`MAX_RANK`], with its logical shape right-aligned and the leading axes set
//! to 1. That is exactly NumPy's broadcasting alignment, so element-wise ops and batched
//! matrix products work on the padded tensors unchanged; ops that need a specific rank
//! (convolution, pooling) reshape to it, which is free.
//!
//! Integer tensors (shapes, indices, axes) live on the host: in the graphs PyTorch exports
//! they only describe shapes (`Shape -> Gather -> Unsqueeze -> Concat -> Reshape`), so they
//! are computed exactly, without a device round trip.

use burn::tensor::{Tensor, TensorData};

use crate::error::OpError;

/// The rank at which every float tensor is stored.
pub const MAX_RANK: usize = 6;

/// Constants with at most this many elements keep a host copy.
pub const HOST_COPY_MAX: usize = 4096;

/// A float tensor with its logical shape.
#[derive(Clone, Debug)]
pub struct FloatValue {
    /// The tensor, padded with leading axes of size 1 to [`MAX_RANK`].
    pub t: Tensor<MAX_RANK>,
    /// The logical shape (its length is the logical rank).
    pub shape: Vec<usize>,
    /// A host copy of the data, kept for small constants (clip bounds, pad values, exponents)
    /// so that operators can read them without a device round trip.
    pub host: Option<std::sync::Arc<[f32]>>,
    /// How `t` holds the values.
    pub layout: Layout,
}

/// How a [`FloatValue`]'s tensor holds its values.
///
/// The CPU convolutions that run as matrix products (`kernels/tap_gemm.rs`) work on images
/// with the batch innermost. Their outputs stay that way while the next operators can read
/// them so (convolutions, ReLUs, residual sums, max pooling: `ops::BATCH_INNER_OPS`), which
/// saves two passes over memory per convolution; the interpreter hands every other operator
/// the standard layout (see `Model::run_once`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Layout {
    /// Row-major in the logical shape, right-aligned in the padded tensor.
    #[default]
    Standard,
    /// A logical `[n, c, h, w]` image batch held as a row-major `[h, c, w, n]` tensor
    /// (padded to `[1, 1, h, c, w, n]`).
    BatchInner,
}

/// A host-side integer tensor (shapes, indices, axes).
#[derive(Clone, Debug, PartialEq)]
pub struct IntValue {
    /// The logical shape.
    pub shape: Vec<usize>,
    /// Row-major data.
    pub data: Vec<i64>,
}

/// A value flowing along a graph edge.
// burn's tensor handle makes the float variant large; values are cloned handles passed
// between nodes a few dozen times per forward pass, so boxing would buy nothing measurable.
#[allow(clippy::large_enum_variant)]
#[derive(Clone, Debug)]
pub enum Value {
    /// A float tensor on the compute device.
    Float(FloatValue),
    /// An integer tensor on the host.
    Int(IntValue),
}

/// Pads a logical shape to [`MAX_RANK`] with leading ones.
pub fn padded(shape: &[usize]) -> Result<[usize; MAX_RANK], OpError> {
    if shape.len() > MAX_RANK {
        return Err(OpError::new(format!(
            "tensor of rank {} is above the supported maximum rank {MAX_RANK}",
            shape.len()
        )));
    }
    let mut out = [1usize; MAX_RANK];
    out[MAX_RANK - shape.len()..].copy_from_slice(shape);
    Ok(out)
}

impl FloatValue {
    /// Wraps a padded tensor with a logical shape (whose product must match).
    pub fn from_padded(t: Tensor<MAX_RANK>, shape: Vec<usize>) -> Self {
        Self {
            t,
            shape,
            host: None,
            layout: Layout::Standard,
        }
    }

    /// Wraps a batch-innermost tensor `[h, c, w, n]` as the logical `[n, c, h, w]` value
    /// (see [`Layout::BatchInner`]).
    pub fn batch_inner(t: Tensor<4>) -> Self {
        let [h, c, w, n] = t.dims();
        Self {
            t: t.reshape([1, 1, h, c, w, n]),
            shape: vec![n, c, h, w],
            host: None,
            layout: Layout::BatchInner,
        }
    }

    /// The tensor as it is held at rank 4: `[h, c, w, n]` for a batch-innermost value,
    /// `None` for any other.
    pub fn batch_inner_tensor(&self) -> Option<Tensor<4>> {
        match (self.layout, &self.shape[..]) {
            (Layout::BatchInner, &[n, c, h, w]) => Some(self.t.clone().reshape([h, c, w, n])),
            _ => None,
        }
    }

    /// Reshapes a tensor of any rank ≤ [`MAX_RANK`] into a [`FloatValue`].
    pub fn from_tensor<const D: usize>(t: Tensor<D>) -> Result<Self, OpError> {
        let shape = t.dims().to_vec();
        let p = padded(&shape)?;
        Ok(Self::from_padded(t.reshape(p), shape))
    }

    /// The logical rank.
    pub fn rank(&self) -> usize {
        self.shape.len()
    }

    /// The number of elements.
    pub fn numel(&self) -> usize {
        self.shape.iter().product()
    }

    /// The tensor at its logical rank `D` (an error when the rank differs).
    pub fn at_rank<const D: usize>(&self, what: &str) -> Result<Tensor<D>, OpError> {
        if self.shape.len() != D {
            return Err(OpError::new(format!(
                "{what} expects a rank-{D} tensor, got shape {:?}",
                self.shape
            )));
        }
        if self.layout != Layout::Standard {
            return Err(OpError::new(format!(
                "{what} reads the standard layout, but the value is held batch-innermost"
            )));
        }
        let mut dims = [0usize; D];
        dims.copy_from_slice(&self.shape);
        Ok(self.t.clone().reshape(dims))
    }

    /// Reshapes to a new logical shape with the same number of elements.
    pub fn reshape(&self, shape: Vec<usize>) -> Result<Self, OpError> {
        if self.layout != Layout::Standard {
            return Err(OpError::new(
                "cannot reshape a value held batch-innermost".to_string(),
            ));
        }
        let n: usize = shape.iter().product();
        if n != self.numel() {
            return Err(OpError::new(format!(
                "cannot reshape {:?} into {:?}",
                self.shape, shape
            )));
        }
        Ok(Self {
            t: self.t.clone().reshape(padded(&shape)?),
            shape,
            host: self.host.clone(),
            layout: Layout::Standard,
        })
    }

    /// Maps the padded tensor through a shape-preserving function, keeping the layout (an
    /// element-wise function reads a batch-innermost value as it is held; any other one is
    /// only given standard values, see [`Layout`]).
    pub fn map(&self, f: impl FnOnce(Tensor<MAX_RANK>) -> Tensor<MAX_RANK>) -> Self {
        Self {
            t: f(self.t.clone()),
            shape: self.shape.clone(),
            host: None,
            layout: self.layout,
        }
    }

    /// Uploads host data to a device.
    pub fn from_host(
        data: Vec<f32>,
        shape: Vec<usize>,
        device: &burn::tensor::Device,
    ) -> Result<Self, OpError> {
        let p = padded(&shape)?;
        let host: Option<std::sync::Arc<[f32]>> =
            (data.len() <= HOST_COPY_MAX).then(|| data.as_slice().into());
        let t = Tensor::<MAX_RANK>::from_data(TensorData::new(data, p.to_vec()), device);
        Ok(Self {
            t,
            shape,
            host,
            layout: Layout::Standard,
        })
    }

    /// The single value of a one-element tensor whose host copy is known.
    pub fn host_scalar(&self) -> Option<f32> {
        match &self.host {
            Some(h) if h.len() == 1 => Some(h[0]),
            _ => None,
        }
    }

    /// The padded index of logical axis `axis`.
    pub fn padded_axis(&self, axis: usize) -> usize {
        MAX_RANK - self.shape.len() + axis
    }
}

impl IntValue {
    /// A rank-1 integer tensor.
    pub fn vector(data: Vec<i64>) -> Self {
        Self {
            shape: vec![data.len()],
            data,
        }
    }

    /// A scalar (rank 0).
    pub fn scalar(v: i64) -> Self {
        Self {
            shape: vec![],
            data: vec![v],
        }
    }
}

impl Value {
    /// The logical shape.
    pub fn shape(&self) -> &[usize] {
        match self {
            Value::Float(f) => &f.shape,
            Value::Int(i) => &i.shape,
        }
    }
}

/// Normalises a possibly negative ONNX axis against a rank.
pub fn norm_axis(axis: i64, rank: usize) -> Result<usize, OpError> {
    let r = rank as i64;
    let a = if axis < 0 { axis + r } else { axis };
    if a < 0 || a >= r.max(1) {
        return Err(OpError::new(format!(
            "axis {axis} is out of range for rank {rank}"
        )));
    }
    Ok(a as usize)
}

/// NumPy broadcasting of two shapes.
pub fn broadcast_shapes(a: &[usize], b: &[usize]) -> Result<Vec<usize>, OpError> {
    let n = a.len().max(b.len());
    let mut out = vec![0; n];
    for i in 0..n {
        let da = if i + a.len() >= n {
            a[i + a.len() - n]
        } else {
            1
        };
        let db = if i + b.len() >= n {
            b[i + b.len() - n]
        } else {
            1
        };
        out[i] = if da == db || db == 1 {
            da
        } else if da == 1 {
            db
        } else {
            return Err(OpError::new(format!(
                "shapes {a:?} and {b:?} cannot be broadcast together"
            )));
        };
    }
    Ok(out)
}
