// mlcourse site: draw each 3D view (a chemiscope widget of an executed lesson, its data inline in the page)
// with the chemiscope JavaScript that site.py copied from chemiscope's wheel. No network, no kernel.
async function mlcourseView(id, mode) {
  const root = document.getElementById(id);
  try {
    const dataset = JSON.parse(document.getElementById(id + '-data').textContent);
    const config = { map: id + '-map', info: id + '-info', meta: id + '-meta', structure: id + '-structure' };
    root.innerHTML = generateChemiscopeHTML(config, mode);
    await getVisualizer(mode).load(config, dataset, new Chemiscope.Warnings());
    root.dataset.drawn = 'yes';
  } catch (error) {
    console.error(error);
    root.dataset.drawn = 'error';
    root.textContent = '3D view failed: ' + error;
  }
}
