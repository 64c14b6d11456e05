use crate::error::Error;

/// The picture formats browsers show everywhere; anything else (SVG, which
/// can carry script, included) is refused.
const KINDS: &[(&str, &[u8])] = &[
    ("image/png", b"\x89PNG\r\n\x1a\n"),
    ("image/jpeg", b"\xff\xd8\xff"),
    ("image/gif", b"GIF8"),
    ("image/webp", b"RIFF"),
];

/// An uploaded avatar: at most the configured size, and its bytes really
/// are the image type it claims to be.
#[derive(Debug, Clone)]
pub struct Avatar {
    pub content_type: &'static str,
    pub bytes: Vec<u8>,
}

impl Avatar {
    pub fn parse(
        content_type: Option<&str>,
        bytes: Vec<u8>,
        max_bytes: usize,
    ) -> Result<Self, Error> {
        if bytes.len() > max_bytes {
            return Err(Error::AvatarTooLarge(max_bytes));
        }
        if bytes.is_empty() {
            return Err(Error::validation("avatar", "The picture is empty."));
        }
        let claimed = content_type
            .and_then(|c| c.split(';').next())
            .map(|c| c.trim().to_ascii_lowercase())
            .unwrap_or_default();
        let Some((kind, magic)) = KINDS.iter().find(|(k, _)| *k == claimed) else {
            return Err(Error::AvatarType);
        };
        let webp_ok = *kind != "image/webp" || bytes.get(8..12) == Some(b"WEBP");
        if !bytes.starts_with(magic) || !webp_ok {
            return Err(Error::validation(
                "avatar",
                format!(
                    "The file is not a valid {} picture.",
                    &kind["image/".len()..]
                ),
            ));
        }
        Ok(Self {
            content_type: kind,
            bytes,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn type_size_and_content_are_checked() {
        let png = b"\x89PNG\r\n\x1a\nrest".to_vec();
        assert_eq!(
            Avatar::parse(Some("image/png"), png.clone(), 100)
                .unwrap()
                .content_type,
            "image/png"
        );
        assert!(matches!(
            Avatar::parse(Some("image/png"), png.clone(), 4),
            Err(Error::AvatarTooLarge(4))
        ));
        assert!(matches!(
            Avatar::parse(Some("image/svg+xml"), png.clone(), 100),
            Err(Error::AvatarType)
        ));
        assert!(matches!(
            Avatar::parse(Some("image/jpeg"), png, 100),
            Err(Error::Validation { .. })
        ));
    }
}
