//! Messages encoded once and sent as they are: a change that many
//! subscribers receive is encoded by the first and shared, as bytes, by the
//! rest. [`FrameCodec`] writes a [`Frame`] to the stream without touching
//! it, and decodes requests as usual.

use std::marker::PhantomData;

use prost::{
    Message,
    bytes::{BufMut, Bytes},
};
use tonic::{
    Status,
    codec::{BufferSettings, Codec, EncodeBuf, Encoder},
};
use tonic_prost::ProstDecoder;

/// An encoded message; cloning it shares the bytes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Frame(Bytes);

impl Frame {
    /// Encodes `message`.
    pub fn of(message: &impl Message) -> Frame {
        Frame(message.encode_to_vec().into())
    }

    /// Bytes that already hold an encoded message (a client that encodes
    /// its requests once, ahead of sending them).
    pub fn from_encoded(bytes: Bytes) -> Frame {
        Frame(bytes)
    }

    /// The encoded bytes.
    pub fn bytes(&self) -> &Bytes {
        &self.0
    }
}

/// Sends [`Frame`]s, receives `Req` messages.
#[derive(Debug)]
pub struct FrameCodec<Req>(PhantomData<fn() -> Req>);

impl<Req> Default for FrameCodec<Req> {
    fn default() -> Self {
        FrameCodec(PhantomData)
    }
}

impl<Req: Message + Default + Send + 'static> Codec for FrameCodec<Req> {
    type Encode = Frame;
    type Decode = Req;
    type Encoder = FrameEncoder;
    type Decoder = ProstDecoder<Req>;

    fn encoder(&mut self) -> FrameEncoder {
        FrameEncoder
    }

    fn decoder(&mut self) -> ProstDecoder<Req> {
        ProstDecoder::default()
    }
}

/// Copies a frame's bytes into the outgoing buffer.
#[derive(Debug, Clone, Copy)]
pub struct FrameEncoder;

impl Encoder for FrameEncoder {
    type Item = Frame;
    type Error = Status;

    fn encode(&mut self, frame: Frame, buf: &mut EncodeBuf<'_>) -> Result<(), Status> {
        buf.put_slice(&frame.0);
        Ok(())
    }

    fn buffer_settings(&self) -> BufferSettings {
        BufferSettings::default()
    }
}

/// Decodes a frame back into its message, for callers that want messages.
pub fn decode_frame<M: Message + Default>(frame: &Frame) -> Result<M, Status> {
    M::decode(frame.0.clone()).map_err(|e| Status::internal(format!("a frame did not decode: {e}")))
}
