"""Built-in output formats besides the core's ``npz``: ``image-folder`` and ``csv`` (see `.files`),
``webdataset`` (see `.webdataset_shards`)."""

from setforge import hookimpl
from setforge.formats import Format

from .files import check_csv, check_image_folder, read_csv, read_image_folder, write_csv, write_image_folder
from .webdataset_shards import WebDatasetWriter, join_webdataset, read_webdataset, write_webdataset


@hookimpl
def setforge_register_formats():
    return [Format("image-folder", write_image_folder, read_image_folder, check_image_folder, modalities=("image",)),
            Format("csv", write_csv, read_csv, check_csv, modalities=("tabular",)),
            Format("webdataset", write_webdataset, read_webdataset, stream=WebDatasetWriter,
                   join=join_webdataset)]
