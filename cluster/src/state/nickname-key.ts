export { foldKey as nicknameKey } from './values.js';
