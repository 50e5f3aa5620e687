import { describe, expect, it } from "vitest";
import { ProtocolError } from "../src/errors";
import { encode, iceCandidate, livekitJoin, offer, parseServer, prompt, setImage } from "../src/messages";

describe("parseServer", () => {
  it("parses every server message of docs/protocol.md", () => {
    expect(parseServer('{"type":"answer","sdp":"v=0"}')).toEqual({ type: "answer", sdp: "v=0" });
    expect(parseServer('{"type":"ice-candidate","candidate":null}')).toEqual({ type: "ice-candidate", candidate: null });
    expect(
      parseServer('{"type":"ice-candidate","candidate":{"candidate":"candidate:1","sdpMid":"0","sdpMLineIndex":0}}'),
    ).toEqual({ type: "ice-candidate", candidate: { candidate: "candidate:1", sdpMid: "0", sdpMLineIndex: 0 } });
    expect(parseServer('{"type":"session_id","session_id":"abc","server_ip":"1.2.3.4","server_port":1234}')).toEqual({
      type: "session_id",
      session_id: "abc",
      server_ip: "1.2.3.4",
      server_port: 1234,
    });
    expect(parseServer('{"type":"prompt_ack","prompt":"Anime style","success":true,"error":null}')).toEqual({
      type: "prompt_ack",
      prompt: "Anime style",
      success: true,
      error: null,
    });
    expect(parseServer('{"type":"set_image_ack","success":false,"error":"Image rejected by moderation"}')).toEqual({
      type: "set_image_ack",
      success: false,
      error: "Image rejected by moderation",
    });
    expect(parseServer('{"type":"generation_started"}')).toEqual({ type: "generation_started" });
    expect(parseServer('{"type":"generation_tick","seconds":12}')).toEqual({ type: "generation_tick", seconds: 12 });
    expect(parseServer('{"type":"generation_ended","seconds":42,"reason":"timeout"}')).toEqual({
      type: "generation_ended",
      seconds: 42,
      reason: "timeout",
    });
    expect(parseServer('{"type":"error","error":"Invalid API key"}')).toEqual({ type: "error", error: "Invalid API key" });
    expect(parseServer('{"type":"queue_position","position":2,"queue_size":5}')).toEqual({
      type: "queue_position",
      position: 2,
      queue_size: 5,
    });
    expect(
      parseServer('{"type":"ice-restart","turn_config":{"server_url":"turn:t","username":"u","credential":"c"}}'),
    ).toEqual({ type: "ice-restart", turn_config: { server_url: "turn:t", username: "u", credential: "c" } });
  });

  it("is liberal: float seconds, missing optional fields, nested error objects, bare candidates", () => {
    expect(parseServer('{"type":"generation_tick","seconds":1.5}')).toEqual({ type: "generation_tick", seconds: 1.5 });
    expect(parseServer('{"type":"generation_ended"}')).toEqual({ type: "generation_ended", seconds: 0, reason: "error" });
    expect(parseServer('{"type":"session_id","session_id":"x"}')).toEqual({
      type: "session_id",
      session_id: "x",
      server_ip: null,
      server_port: null,
    });
    expect(parseServer('{"type":"error","error":{"message":"boom"}}')).toEqual({ type: "error", error: "boom" });
    expect(parseServer('{"type":"error"}')).toEqual({ type: "error", error: "unknown error" });
    expect(parseServer('{"type":"prompt_ack","prompt":"p","success":true}')).toMatchObject({ error: null });
    expect(parseServer('{"type":"ice-candidate","candidate":"candidate:9","sdpMid":"0","sdpMLineIndex":0}')).toEqual({
      type: "ice-candidate",
      candidate: { candidate: "candidate:9", sdpMid: "0", sdpMLineIndex: 0 },
    });
  });

  it("ignores unknown types (null)", () => {
    expect(parseServer('{"type":"brand_new_thing","x":1}')).toBeNull();
  });

  it("parses Gen-B's room info and queue position (also under its legacy key)", () => {
    expect(parseServer('{"type":"livekit_room_info","livekit_url":"wss://x","token":"t"}')).toEqual({
      type: "livekit_room_info",
      livekit_url: "wss://x",
      token: "t",
      room_name: null,
      session_id: null,
    });
    expect(parseServer('{"type":"queue_position","queue_position":2,"queue_size":5}')).toEqual({
      type: "queue_position",
      position: 2,
      queue_size: 5,
    });
    expect(() => parseServer('{"type":"livekit_room_info","livekit_url":"wss://x"}')).toThrowError(
      "'livekit_room_info' message needs a string 'token', got nothing",
    );
  });

  it.each([
    ["not json", "frame is not valid JSON"],
    ["[1,2]", "frame must be a JSON object, got array"],
    ['{"no":"type"}', "frame has no string 'type'"],
    ['{"type":"answer"}', "'answer' message needs a string 'sdp', got nothing"],
    ['{"type":"prompt_ack","prompt":"p","success":"yes"}', "'prompt_ack' message needs a boolean 'success', got string"],
    ['{"type":"generation_tick","seconds":"12"}', "'generation_tick' message needs a number 'seconds', got string"],
    ['{"type":"ice-candidate","candidate":42}', "'ice-candidate' message: bad candidate number"],
  ])("rejects the malformed frame %s with a clear error", (frame, message) => {
    expect(() => parseServer(frame)).toThrowError(ProtocolError);
    expect(() => parseServer(frame)).toThrowError(message);
  });
});

describe("client messages", () => {
  it("are sent with every field present", () => {
    expect(encode(offer("v=0"))).toBe('{"type":"offer","sdp":"v=0"}');
    expect(encode(iceCandidate(null))).toBe('{"type":"ice-candidate","candidate":null}');
    expect(encode(livekitJoin(false))).toBe('{"type":"livekit_join"}');
    expect(encode(livekitJoin(true))).toBe('{"type":"livekit_join","passthrough":true}');
    expect(encode(prompt("Anime style", true))).toBe('{"type":"prompt","prompt":"Anime style","enhance_prompt":true}');
    expect(encode(setImage(null, null, true))).toBe(
      '{"type":"set_image","image_data":null,"prompt":null,"enhance_prompt":true}',
    );
    expect(JSON.parse(encode(setImage("QUJD", "Noir", false)))).toEqual({
      type: "set_image",
      image_data: "QUJD",
      prompt: "Noir",
      enhance_prompt: false,
    });
  });
});
