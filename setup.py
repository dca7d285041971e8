"""Package metadata comes from settings.ini (nbdev 2.x convention)."""
from configparser import ConfigParser
import setuptools

cfg = ConfigParser(delimiters=['='], interpolation=None)
cfg.read('settings.ini', encoding='utf-8')
cfg = cfg['DEFAULT']
licenses = dict(apache2=('Apache Software License 2.0', 'OSI Approved :: Apache Software License'))
lic = licenses[cfg['license']]
requirements = cfg.get('requirements', '').split()
dev_requirements = cfg.get('dev_requirements', '').split()
scripts = [s.strip() for s in cfg.get('console_scripts', '').split('\n') if s.strip()]

setuptools.setup(
    name=cfg['lib_name'], version=cfg['version'], license=lic[0],
    description=cfg['description'], long_description=open('README.md', encoding='utf-8').read(),
    long_description_content_type='text/markdown', author=cfg['author'], author_email=cfg['author_email'],
    url=cfg['git_url'], keywords=cfg['keywords'].split(),
    classifiers=['Programming Language :: Python :: 3', f'License :: {lic[1]}'],
    packages=setuptools.find_namespace_packages(include=[cfg['lib_path'], cfg['lib_path'] + '.*']),  # namespace: assets/ ships as data
    include_package_data=True, package_data={cfg['lib_path']: ['assets/*', 'assets/**/*', 'pretrained/*.pt', 'pretrained/*.json', 'pretrained/*.jsonl']},
    python_requires='>=' + cfg['min_python'], install_requires=requirements,
    extras_require={'dev': dev_requirements}, zip_safe=False,
    entry_points={'console_scripts': scripts, 'nbdev': [f"{cfg['lib_path']}={cfg['lib_path']}._modidx:d"]},
)
