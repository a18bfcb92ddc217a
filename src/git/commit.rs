//! A raw commit object (`git cat-file commit`) split the way git splits it to verify a signature:
//! the signature header of the repository's object format, the payload git signed (the object
//! without any `gpgsig*` header), and the committer time git hands ssh-keygen as the verify time.
//! Pure bytes in, bytes out.

/// The repository's hash function, which decides the name of the signature header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ObjectFormat {
    Sha1,
    Sha256,
}

impl ObjectFormat {
    /// As `git rev-parse --show-object-format` prints it.
    pub fn from_name(name: &str) -> Option<ObjectFormat> {
        match name {
            "sha1" => Some(ObjectFormat::Sha1),
            "sha256" => Some(ObjectFormat::Sha256),
            _ => None,
        }
    }

    /// git's `gpg_sig_headers`: the header that carries this format's signature.
    pub fn signature_header(self) -> &'static str {
        match self {
            ObjectFormat::Sha1 => "gpgsig",
            ObjectFormat::Sha256 => "gpgsig-sha256",
        }
    }
}

/// What signature verification needs from one commit object.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CommitObject {
    /// The armored signature (continuation lines joined, their leading space removed), if any.
    pub signature: Option<Vec<u8>>,
    /// The bytes that were signed.
    pub payload: Vec<u8>,
    /// The committer timestamp, in seconds since the epoch.
    pub committer_time: Option<i64>,
}

impl CommitObject {
    /// Splits `raw` as git's `parse_buffer_signed_by_header` does: headers end at the first empty
    /// line; this format's signature header and its continuation lines make the signature; every
    /// `gpgsig*` header (this format's or another's) and its continuation lines leave the payload.
    pub fn parse(raw: &[u8], format: ObjectFormat) -> CommitObject {
        let header = format.signature_header().as_bytes();
        let mut signature: Vec<u8> = Vec::new();
        let mut saw_signature = false;
        let mut payload: Vec<u8> = Vec::with_capacity(raw.len());
        let (mut in_signature, mut other_signature) = (false, false);
        let mut rest = raw;
        while !rest.is_empty() {
            let end = rest
                .iter()
                .position(|&b| b == b'\n')
                .map_or(rest.len(), |i| i + 1);
            let line = &rest[..end];
            let sig = if in_signature && line.starts_with(b" ") {
                Some(&line[1..])
            } else if line.starts_with(header) && line.get(header.len()) == Some(&b' ') {
                other_signature = false;
                Some(&line[header.len() + 1..])
            } else {
                if line.starts_with(b"gpgsig") {
                    other_signature = true;
                } else if other_signature && !line.starts_with(b" ") {
                    other_signature = false;
                }
                None
            };
            if let Some(sig) = sig {
                signature.extend_from_slice(sig);
                saw_signature = true;
                in_signature = true;
                rest = &rest[end..];
                continue;
            }
            in_signature = false;
            if line == b"\n" {
                // The message: everything from here on is payload.
                payload.extend_from_slice(rest);
                break;
            }
            if !other_signature {
                payload.extend_from_slice(line);
            }
            rest = &rest[end..];
        }
        let committer_time = committer_time(&payload);
        CommitObject {
            signature: saw_signature.then_some(signature),
            payload,
            committer_time,
        }
    }
}

/// The timestamp of the first `committer` header: the digits after the last `>` of its line.
fn committer_time(payload: &[u8]) -> Option<i64> {
    let mut headers = payload.split(|&b| b == b'\n').take_while(|l| !l.is_empty());
    let line = headers.find_map(|l| l.strip_prefix(b"committer "))?;
    let after = &line[line.iter().rposition(|&b| b == b'>')? + 1..];
    let digits: Vec<u8> = after
        .iter()
        .skip_while(|&&b| b == b' ')
        .take_while(|b| b.is_ascii_digit())
        .copied()
        .collect();
    std::str::from_utf8(&digits).ok()?.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    const SIGNED: &[u8] = b"tree 3be22be77da4887e869c981806d8452f034dd014\n\
author A <a@x> 1796171889 +0000\n\
committer A B <a@x> 1796171890 +0100\n\
gpgsig -----BEGIN SSH SIGNATURE-----\n \
U1NIU0lH\n \
AAAA\n \
-----END SSH SIGNATURE-----\n\
mergetag object 1\n \
type commit\n\
\n\
one\ngpgsig not a header\n";

    #[test]
    fn signature_and_payload_are_split_as_git_does() {
        let c = CommitObject::parse(SIGNED, ObjectFormat::Sha1);
        assert_eq!(
            c.signature.as_deref(),
            Some(
                &b"-----BEGIN SSH SIGNATURE-----\nU1NIU0lH\nAAAA\n-----END SSH SIGNATURE-----\n"[..]
            )
        );
        assert_eq!(
            c.payload,
            b"tree 3be22be77da4887e869c981806d8452f034dd014\n\
author A <a@x> 1796171889 +0000\n\
committer A B <a@x> 1796171890 +0100\n\
mergetag object 1\n \
type commit\n\
\n\
one\ngpgsig not a header\n"
                .to_vec()
        );
        assert_eq!(c.committer_time, Some(1_796_171_890));
    }

    #[test]
    fn the_other_formats_signature_is_not_this_ones_but_leaves_the_payload() {
        let sha256 = CommitObject::parse(SIGNED, ObjectFormat::Sha256);
        assert_eq!(sha256.signature, None);
        let sha1 = CommitObject::parse(SIGNED, ObjectFormat::Sha1);
        assert_eq!(sha256.payload, sha1.payload);

        let both = b"tree t\ncommitter c <c> 5 +0000\ngpgsig-sha256 X\n Y\ngpgsig A\n B\n\nmsg";
        let c = CommitObject::parse(both, ObjectFormat::Sha256);
        assert_eq!(c.signature.as_deref(), Some(&b"X\nY\n"[..]));
        assert_eq!(
            c.payload,
            b"tree t\ncommitter c <c> 5 +0000\n\nmsg".to_vec()
        );
        assert_eq!(c.committer_time, Some(5));
    }

    #[test]
    fn unsigned_and_odd_committers() {
        let c = CommitObject::parse(b"tree t\ncommitter x\n\nm", ObjectFormat::Sha1);
        assert_eq!((c.signature, c.committer_time), (None, None));
        assert_eq!(c.payload, b"tree t\ncommitter x\n\nm".to_vec());
        let c = CommitObject::parse(b"committer <a> <b> 42 +0000", ObjectFormat::Sha1);
        assert_eq!(c.committer_time, Some(42));
        let c = CommitObject::parse(b"tree t\n\ncommitter a <b> 42 +0000\n", ObjectFormat::Sha1);
        assert_eq!(c.committer_time, None);
    }
}
