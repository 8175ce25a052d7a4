/**
 * The web app's entry: applies the remembered theme before the first paint, then renders.
 */
import { render } from 'preact';
import { App } from './app.js';
import { applyTheme, loadTheme } from './session.js';
import './styles.css';

applyTheme(loadTheme());
render(<App />, document.getElementById('root')!);
