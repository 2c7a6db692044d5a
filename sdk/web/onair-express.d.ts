// Type declarations for onair-express.js, OnAir's browser SDK.

export type RoomStateChangedReason =
  | "LOGINING" | "LOGINED" | "LOGIN_FAILED"
  | "RECONNECTING" | "RECONNECTED" | "RECONNECT_FAILED"
  | "KICKOUT" | "LOGOUT" | "LOGOUT_FAILED";
export type UpdateType = "ADD" | "DELETE";
export type PublisherStateName = "NO_PUBLISH" | "PUBLISH_REQUESTING" | "PUBLISHING";
export type PlayerStateName = "NO_PLAY" | "PLAY_REQUESTING" | "PLAYING";

/** A player's choice of simulcast layer: auto follows its bandwidth. */
export type VideoLayerName = "auto" | "high" | "medium" | "low";
export declare const VideoLayer: { readonly AUTO: "auto"; readonly HIGH: "high"; readonly MEDIUM: "medium"; readonly LOW: "low" };

export declare const RoomStateChangedReason: { readonly [K in RoomStateChangedReason]: K };
export declare const PublisherState: { readonly [K in PublisherStateName]: K };
export declare const PlayerState: { readonly [K in PlayerStateName]: K };
export declare const ErrorCode: {
  readonly INVALID_PARAMETER: 1000002;
  readonly NOT_LOGGED_IN: 1002002;
  readonly LOGGED_IN_TWICE: 1002001;
  readonly CONNECT_FAILED: 1002030;
  readonly CONNECTION_BROKEN: 1002051;
  readonly RECONNECT_GAVE_UP: 1002053;
  readonly SESSION_NOT_FOUND: 1002083;
  readonly ALREADY_PUBLISHING: 1003023;
  readonly PUBLISH_FAILED: 1003002;
  readonly STREAM_NOT_FOUND: 1004002;
  readonly PLAY_FAILED: 1004001;
  readonly DEVICE_ERROR: 1103061;
};

/** An error with the vendor's numeric code (msg repeats message). */
export declare class OnAirError extends Error {
  readonly code: number;
  readonly msg: string;
  readonly status?: string | number;
}

export interface EngineConfig {
  appID: number;
  /** The gateway's base URL; the page's origin when left out. */
  server?: string;
}

export interface User {
  userID: string;
  userName?: string;
}

export interface RoomConfig {
  /** Receive roomUserUpdate. */
  userUpdate?: boolean;
  /** 0 = no limit. */
  maxMemberCount?: number;
}

export interface StreamInfo {
  streamID: string;
  user: { userID: string; userName: string };
  extraInfo: string;
  /** Unix milliseconds. */
  createTime: number;
}

export interface RoomExtraInfo {
  key: string;
  value: string;
  updateUser: { userID: string; userName: string };
  updateTime: number;
}

export interface BroadcastMessageInfo {
  message: string;
  messageID: string;
  sendTime: number;
  fromUser: { userID: string; userName: string };
}

export interface PublisherStateResult {
  state: PublisherStateName;
  streamID: string;
  errorCode: number;
  extendedData: string;
}

export interface PlayerStateResult {
  state: PlayerStateName;
  streamID: string;
  errorCode: number;
  extendedData: string;
}

export interface QualityStats {
  video: {
    videoBitrate: number; videoFPS: number; videoPacketsLostRate: number; frameWidth: number; frameHeight: number;
    /**
     * Play quality only: the layer the edge sends this player, as its media
     * session's events say ("" until it says, or for a stream without
     * layers).
     */
    videoLayer?: "high" | "medium" | "low" | "";
    /** Play quality only: video is paused because even the lowest layer does not fit the player's link (audio plays on). */
    videoPaused?: boolean;
  };
  audio: { audioBitrate: number; audioPacketsLostRate: number };
  /** Milliseconds. */
  currentRoundTripTime: number;
  /** 0 excellent .. 4 bad. */
  level: number;
}

export interface PublishConfig {
  extraInfo?: string;
  /** false: send one layer even when the camera is above 360p. Default true. */
  enableDualStream?: boolean;
}

export interface PlayOptions {
  /** A token other than the room's. */
  token?: string;
  /** The simulcast layer to play (WHEP ?layer=): "auto" (default) follows the player's bandwidth. */
  videoLayer?: VideoLayerName;
}

export interface EventMap {
  roomStateChanged: (roomID: string, reason: RoomStateChangedReason, errorCode: number, extendedData: string) => void;
  roomUserUpdate: (roomID: string, updateType: UpdateType, userList: { userID: string; userName: string }[]) => void;
  roomOnlineUserCountUpdate: (roomID: string, count: number) => void;
  roomStreamUpdate: (roomID: string, updateType: UpdateType, streamList: StreamInfo[], extendedData: string) => void;
  roomStreamExtraInfoUpdate: (roomID: string, streamList: StreamInfo[]) => void;
  roomExtraInfoUpdate: (roomID: string, roomExtraInfoList: RoomExtraInfo[]) => void;
  IMRecvBroadcastMessage: (roomID: string, chatData: BroadcastMessageInfo[]) => void;
  IMRecvBarrageMessage: (roomID: string, chatData: BroadcastMessageInfo[]) => void;
  IMRecvCustomCommand: (roomID: string, fromUser: { userID: string; userName: string }, command: string) => void;
  publisherStateUpdate: (result: PublisherStateResult) => void;
  playerStateUpdate: (result: PlayerStateResult) => void;
  publishQualityUpdate: (streamID: string, stats: QualityStats) => void;
  playQualityUpdate: (streamID: string, stats: QualityStats) => void;
  playerRecvVideoFirstFrame: (streamID: string) => void;
  /** About 30 s before the token expires: call renewToken. */
  tokenWillExpire: (roomID: string, remainSeconds: number) => void;
}

export declare class ExpressEngine {
  constructor(config: EngineConfig);
  readonly appID: number;
  readonly server: string;
  getVersion(): string;
  on<K extends keyof EventMap>(event: K, handler: EventMap[K]): boolean;
  off<K extends keyof EventMap>(event: K, handler?: EventMap[K]): boolean;

  /** Resolves true once logged in; rejects with an OnAirError (also reported as LOGIN_FAILED). */
  loginRoom(roomID: string, token: string, user: User, config?: RoomConfig): Promise<boolean>;
  logoutRoom(roomID?: string): Promise<void>;
  renewToken(token: string, roomID?: string): Promise<boolean>;
  setRoomExtraInfo(roomID: string, key: string, value: string): Promise<{ errorCode: number }>;
  sendBroadcastMessage(roomID: string, message: string): Promise<{ errorCode: number; messageID: string }>;
  sendCustomCommand(roomID: string, command: string, toUserIDs?: string[]): Promise<{ errorCode: number }>;
  setStreamExtraInfo(streamID: string, extraInfo: string): Promise<{ errorCode: number }>;

  createStream(source?: { camera?: { video?: boolean | MediaTrackConstraints; audio?: boolean | MediaTrackConstraints } }): Promise<MediaStream>;
  destroyStream(stream: MediaStream): void;
  /**
   * Layered (simulcast) publishing of stream on or off for the next
   * startPublishingStream; on by default.
   */
  enableDualStream(stream: MediaStream, enable: boolean): boolean;
  /**
   * Publishes (WHIP, bound to the room session) in the room this engine is
   * logged into. A camera above 360p is sent as three simulcast layers
   * (full, half, quarter size; RIDs f, h, q) unless enableDualStream is
   * false here or was turned off for the stream.
   */
  startPublishingStream(streamID: string, mediaStream: MediaStream, config?: PublishConfig): Promise<boolean>;
  stopPublishingStream(streamID: string): Promise<boolean>;
  /** Plays (WHEP) with the room's token, or options.token. Rejects with 1004002 when the stream is not live. */
  startPlayingStream(streamID: string, options?: PlayOptions): Promise<MediaStream>;
  stopPlayingStream(streamID: string): Promise<boolean>;
  destroyEngine(): Promise<void>;
}

export declare function createEngine(config: EngineConfig): ExpressEngine;
