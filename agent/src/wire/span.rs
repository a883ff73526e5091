//! Bytes handed from one stage of the pipeline to the next (reassembly to framing, framing to
//! decoding) without a copy in the usual case: either a range of the input the stage was just
//! given, or bytes it had to keep because they arrived in pieces.

use std::ops::Range;

/// Where handed-on bytes are.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Span {
    /// This range of the input just given to the stage (in-order data, a frame that arrived
    /// whole): not copied.
    Within(Range<usize>),
    /// Bytes the stage assembled or held back.
    Owned(Vec<u8>),
}

impl Span {
    /// The bytes, given the input the stage was fed when it handed them on.
    pub fn bytes<'a>(&'a self, input: &'a [u8]) -> &'a [u8] {
        match self {
            Span::Within(range) => input.get(range.clone()).unwrap_or_default(),
            Span::Owned(bytes) => bytes,
        }
    }

    /// Copies the bytes out of `input`, for a caller that keeps them after `input` is gone.
    pub fn detach(&mut self, input: &[u8]) {
        if let Span::Within(_) = self {
            *self = Span::Owned(self.bytes(input).to_vec());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_in_place_or_owned_and_detaches() {
        let input = b"0123456789";
        let mut span = Span::Within(2..5);
        assert_eq!(span.bytes(input), b"234");
        assert_eq!(
            Span::Within(8..20).bytes(input),
            b"",
            "out of range reads nothing"
        );
        span.detach(input);
        assert_eq!(span, Span::Owned(b"234".to_vec()));
        assert_eq!(span.bytes(b""), b"234");
    }
}
