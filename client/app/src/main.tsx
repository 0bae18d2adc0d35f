import { render } from 'solid-js/web';
import { App } from './App.tsx';
import { ExtensionLink } from './link.ts';
import { apply, setView } from './store.ts';
import './styles.css';

const link = new ExtensionLink();
link.on(apply);
link.onLinkChange = (up) => setView('linkUp', up);
link.start();

render(() => <App link={link} />, document.getElementById('root')!);
