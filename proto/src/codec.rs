//! The codec of every `flowserver.v1` call: prost's encoding, with decode
//! failures classified as the client's fault.
//!
//! tonic's own prost codec answers a message that does not decode (a string
//! field holding invalid UTF-8, a truncated field) with `INTERNAL`. Such a
//! message is the sender's mistake, so here it is [`RequestError::Undecodable`]
//! (`INVALID_ARGUMENT`), and prost's text names the field
//! (`SubmitRequest.config: invalid string value: data is not UTF-8 encoded`).

use std::marker::PhantomData;

use prost::Message;
use tonic::Status;
use tonic::codec::{Codec, DecodeBuf, Decoder};
use tonic_prost::ProstEncoder;

use crate::{RequestError, to_status};

/// Encodes `T` and decodes `U` with prost; see the module docs.
#[derive(Debug, Clone)]
pub struct FlowCodec<T, U> {
    _messages: PhantomData<(T, U)>,
}

impl<T, U> Default for FlowCodec<T, U> {
    fn default() -> Self {
        FlowCodec { _messages: PhantomData }
    }
}

impl<T, U> Codec for FlowCodec<T, U>
where
    T: Message + Send + 'static,
    U: Message + Default + Send + 'static,
{
    type Encode = T;
    type Decode = U;
    type Encoder = ProstEncoder<T>;
    type Decoder = FlowDecoder<U>;

    fn encoder(&mut self) -> Self::Encoder {
        ProstEncoder::default()
    }

    fn decoder(&mut self) -> Self::Decoder {
        FlowDecoder { _message: PhantomData }
    }
}

/// Decodes one `U` from exactly the bytes of one gRPC message.
#[derive(Debug, Clone)]
pub struct FlowDecoder<U> {
    _message: PhantomData<U>,
}

impl<U: Message + Default> Decoder for FlowDecoder<U> {
    type Item = U;
    type Error = Status;

    fn decode(&mut self, buf: &mut DecodeBuf<'_>) -> Result<Option<U>, Status> {
        U::decode(buf).map(Some).map_err(|error| to_status(&RequestError::Undecodable(error)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::v1::SubmitRequest;

    #[test]
    fn invalid_utf8_names_the_field_and_is_the_clients_fault() {
        // Field 2 (config), length-delimited, 2 bytes that are not UTF-8.
        let bytes = [0x12, 2, 0xff, 0xfe];
        let error = SubmitRequest::decode(&bytes[..]).unwrap_err();
        let status = to_status(&RequestError::Undecodable(error));
        assert_eq!(status.code(), tonic::Code::InvalidArgument);
        assert_eq!(
            status.message(),
            "invalid request: failed to decode Protobuf message: SubmitRequest.config: invalid string value: \
             data is not UTF-8 encoded"
        );
    }
}
