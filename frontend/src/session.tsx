import { createContext, useContext } from 'react';
import type { Client as WsClient } from 'graphql-ws';

export interface Viewer {
  id: string;
  username: string;
}

export interface SessionState {
  viewer: Viewer | null;
  /** After sign-in or sign-out: rebuilds the GraphQL clients (the WebSocket re-authenticates). */
  setViewer: (viewer: Viewer | null) => void;
}

export const Session = createContext<SessionState>({ viewer: null, setViewer: () => {} });

export const useSession = () => useContext(Session);

/** The live (WebSocket) link of the current client, for streams that resume by hand. */
export const Live = createContext<WsClient | null>(null);

export const useLive = () => useContext(Live);
