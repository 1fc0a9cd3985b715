import { createContext, useContext } from 'react';

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
