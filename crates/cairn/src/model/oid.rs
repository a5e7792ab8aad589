//! Git object ids as a lock records them: validated once, when the lock is read, and typed from
//! then on, so no command parses a commit or tree id out of a string again.

use std::fmt;

/// A git object id: 40 lower-case hex digits (SHA-1), or 64 (a repository in the SHA-256 object
/// format, which the lock format accepts; libgit2 reads only SHA-1 repositories).
/// Kept as its hex digits in place, so it is `Copy`.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ObjectId {
    hex: [u8; 64],
    len: u8,
}

impl ObjectId {
    /// The id written as `hex`, or `None` when it is not 40 or 64 lower-case hex digits.
    pub fn parse(hex: &str) -> Option<ObjectId> {
        let ok = (hex.len() == 40 || hex.len() == 64)
            && hex.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'));
        ok.then(|| {
            let mut id = ObjectId {
                hex: [0; 64],
                len: hex.len() as u8,
            };
            id.hex[..hex.len()].copy_from_slice(hex.as_bytes());
            id
        })
    }

    /// Git's null id (40 zeros): a placeholder that never names an object.
    pub fn null() -> ObjectId {
        ObjectId::parse(&"0".repeat(40)).expect("40 zeros are an id")
    }

    /// The full hex form.
    pub fn as_str(&self) -> &str {
        std::str::from_utf8(&self.hex[..self.len as usize]).expect("hex digits are ASCII")
    }

    /// The first 12 hex digits, as shown to people.
    pub fn short(&self) -> &str {
        &self.as_str()[..12]
    }

    /// The id as libgit2 takes it; `None` for a SHA-256 id.
    pub fn to_git(&self) -> Option<git2::Oid> {
        (self.len == 40)
            .then(|| git2::Oid::from_str(self.as_str()).ok())
            .flatten()
    }
}

impl From<git2::Oid> for ObjectId {
    fn from(oid: git2::Oid) -> ObjectId {
        ObjectId::parse(&oid.to_string()).expect("libgit2 writes 40 lower-case hex digits")
    }
}

/// An id reads as its hex text wherever text is wanted (an argv, a message, a map key).
impl std::ops::Deref for ObjectId {
    type Target = str;
    fn deref(&self) -> &str {
        self.as_str()
    }
}

impl AsRef<std::ffi::OsStr> for ObjectId {
    fn as_ref(&self) -> &std::ffi::OsStr {
        self.as_str().as_ref()
    }
}

impl fmt::Display for ObjectId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl fmt::Debug for ObjectId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl serde::Serialize for ObjectId {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.as_str())
    }
}

impl PartialEq<str> for ObjectId {
    fn eq(&self, other: &str) -> bool {
        self.as_str() == other
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_full_lower_case_hex_ids() {
        let sha1 = "0123456789abcdef0123456789abcdef01234567";
        let id = ObjectId::parse(sha1).unwrap();
        assert_eq!((id.as_str(), id.short()), (sha1, "0123456789ab"));
        assert_eq!(id.to_git().unwrap().to_string(), sha1);
        let sha256 = "a".repeat(64);
        assert!(ObjectId::parse(&sha256).unwrap().to_git().is_none());
        for bad in [
            "",
            "abc",
            &sha1.to_uppercase(),
            &format!("{sha1}0"),
            "--upload-pack=x",
        ] {
            assert!(ObjectId::parse(bad).is_none(), "{bad}");
        }
    }
}
