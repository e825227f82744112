//! Class-name files: one name per line, line `i` naming class `i`.

use std::collections::HashMap;
use std::fs;
use std::path::{Path, PathBuf};

use crate::error::{DataError, Result};

/// The class names read from a file.
#[derive(Clone, Debug)]
pub(crate) struct Classes {
    pub path: PathBuf,
    pub names: Vec<String>,
    index: HashMap<String, usize>,
}

impl Classes {
    /// Reads a classes file. Surrounding whitespace is trimmed and trailing blank lines are
    /// ignored; a blank line between names (which would shift every later index) and a name
    /// given twice are errors.
    pub fn read(path: &Path) -> Result<Self> {
        let text = fs::read_to_string(path).map_err(|e| match e.kind() {
            std::io::ErrorKind::NotFound => DataError::not_found(path, "classes file"),
            _ => DataError::io("read", path, e),
        })?;
        let mut names: Vec<String> = text.lines().map(|l| l.trim().to_string()).collect();
        while names.last().is_some_and(String::is_empty) {
            names.pop();
        }
        if names.is_empty() {
            return Err(DataError::format(path, "holds no class names"));
        }
        let mut index = HashMap::with_capacity(names.len());
        for (i, name) in names.iter().enumerate() {
            if name.is_empty() {
                return Err(DataError::format(
                    path,
                    format!("line {} is blank; every line must name one class", i + 1),
                ));
            }
            if let Some(j) = index.insert(name.clone(), i) {
                return Err(DataError::format(
                    path,
                    format!(
                        "class `{name}` is named twice (lines {} and {})",
                        j + 1,
                        i + 1
                    ),
                ));
            }
        }
        Ok(Classes {
            path: path.to_path_buf(),
            names,
            index,
        })
    }

    /// The index of a class name.
    pub fn index_of(&self, name: &str) -> Option<usize> {
        self.index.get(name).copied()
    }
}
